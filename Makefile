# FashionLab: `make test` and `make book` are all a newcomer needs (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NB ?=
NOTEBOOKS := $(sorted $(wildcard notebooks/[0-9]*.py))
# Notebooks and tests run offline, on the CPU, in fp32.
export FASHIONLAB_PROFILE ?= tiny
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install lab test unit nbval nbval-portable sync-check colab-check book check-book linkcheck nb notebooks clean

$(STAMP): requirements.txt constraints-book.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || \
		(echo "FashionLab needs Python 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)." \
		"Install Python 3.11 and run: make PYTHON=python3.11 $(MAKECMDGOALS)" && exit 2)
	@test -x $(PY) || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		(echo "'$(PYTHON)' has no venv module. On Debian or Ubuntu: apt-get install python3.11-venv" \
		"(or python3-venv), then run make again" && exit 2)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -c constraints-book.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fashionlab)"
	touch $(STAMP)

install: $(STAMP)

# JupyterLab on the notebooks, from the venv (pinned in requirements.txt); it prints the address to
# open. LAB_ARGS passes options through, e.g. make lab LAB_ARGS="--no-browser --port 8899".
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests -q

NBVAL_ARGS := -q -p tests.nbval_plugin --nbval --nbval-current-env \
	--nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 600
NBS ?= notebooks/*.ipynb

nbval: $(STAMP)
	$(PY) -m pytest $(NBVAL_ARGS) $(NBS)

# The stored outputs must hold on other CPUs, not only the one that wrote them: re-run nbval with
# AVX2 kernels only (oneDNN, MKL and ATen capped), then on one thread, then on four (what a GitHub
# runner gives a kernel; on a 2-core machine its threads wait passively, or oversubscribed OpenMP
# threads spin and a cell can run ten times slower). Not part of `make test` (it takes about three
# times as long as nbval); run it before committing a re-executed notebook. NBS=... limits it.
nbval-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 $(PY) -m pytest $(NBVAL_ARGS) $(NBS)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest $(NBVAL_ARGS) $(NBS)
	OMP_NUM_THREADS=4 MKL_NUM_THREADS=4 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest $(NBVAL_ARGS) $(NBS)

# Every chapter as a Colab user meets it (tests/colab_check.py): the built wheel, installed by each
# notebook's own install cell into a fresh environment that holds only Colab's PyTorch and kernel and a
# stand-in google.colab; every notebook executed from a folder outside the repository (about 35 min on
# 2 cores). .ci/run runs COLAB_ARGS="--full 01": chapter 01 whole, every other chapter's install cell and
# imports, so that CI stays within its 90 minutes beside make test.
COLAB_ARGS ?=
colab-check: $(STAMP)
	$(PY) -m tests.colab_check $(COLAB_ARGS)

sync-check: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks_paired.py

# The book serves its own pinned MathJax (SVG output: no web fonts, so maths renders from disk and
# offline). pip fetches MathJax's release as PyPI packages it (django-static-mathjax: MathJax's own es5
# build and licence, no code of Django's and no dependencies), so building the book needs no JavaScript
# toolchain; the wheel's sha256 is checked before anything is unpacked.
MATHJAX_VERSION := 3.2.2
MATHJAX_WHEEL := django_static_mathjax-$(MATHJAX_VERSION).1-py3-none-any.whl
MATHJAX_SHA256 := 05ad109fd9e5d9d380c76389689b7f523e9ccb7f7a85c1eb962c7564eac7601d
MATHJAX := book/_static/mathjax/tex-svg.js

$(MATHJAX): $(STAMP)
	rm -rf _build/mathjax-pack && mkdir -p _build/mathjax-pack book/_static/mathjax
	$(PY) -m pip download --quiet --no-deps --only-binary :all: --dest _build/mathjax-pack \
		django-static-mathjax==$(MATHJAX_VERSION).1
	echo "$(MATHJAX_SHA256)  _build/mathjax-pack/$(MATHJAX_WHEEL)" | sha256sum -c --quiet
	$(PY) -m zipfile -e _build/mathjax-pack/$(MATHJAX_WHEEL) _build/mathjax-pack/unpacked
	cp -r _build/mathjax-pack/unpacked/mathjax/static/mathjax/es5/. \
		_build/mathjax-pack/unpacked/mathjax/static/mathjax/LICENSE book/_static/mathjax/
	cd book/_static/mathjax && rm -rf sre output/chtml output/chtml.js latest.js node-main.js mml-*.js \
		tex-chtml*.js tex-mml-*.js tex-svg-full.js
	rm -rf _build/mathjax-pack

book: $(STAMP) $(MATHJAX)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# Headless Chromium opens every page of the built book from disk (see tests/check_book.py); run by
# .ci/run after `make test`. As root it installs Debian's chromium if it is missing.
check-book: $(STAMP) $(MATHJAX)
	command -v chromium >/dev/null || (test "$$(id -u)" = 0 && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		(echo "check-book needs chromium: apt-get install chromium" && exit 2)
	FASHIONLAB_CHECK_BOOK=1 $(PY) -m pytest -q tests/test_check_book.py
	test -f _build/html/index.html || $(MAKE) book
	$(PY) -m tests.check_book _build/html --toc _toc.yml --screenshots _build/screenshots

# The book's external links (needs the network; the weekly scheduled workflow runs it).
linkcheck: $(STAMP)
	$(VENV)/bin/jupyter-book build . --builder linkcheck

test: $(STAMP)
	$(PY) -m pytest tests -q
	$(MAKE) nbval
	$(MAKE) book

# Sync a notebook's .py into its .ipynb and execute it in place: make nb NB=notebooks/01_garments.py
nb: $(STAMP)
	@test -n "$(NB)" || (echo "usage: make nb NB=notebooks/NN_name.py" && exit 2)
	$(VENV)/bin/jupytext --set-formats ipynb,py:percent $(NB)
	$(VENV)/bin/jupytext --sync $(NB)
	$(VENV)/bin/jupyter execute --inplace --timeout=600 $(basename $(NB)).ipynb
	$(VENV)/bin/jupytext --sync $(NB)

notebooks: $(STAMP)
	for nb in $(NOTEBOOKS); do $(MAKE) nb NB=$$nb || exit 1; done

clean:
	rm -rf _build
