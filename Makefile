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

.PHONY: install test unit nbval sync-check book nb notebooks clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fashionlab)"
	touch $(STAMP)

install: $(STAMP)

unit: $(STAMP)
	$(PY) -m pytest tests -q

nbval: $(STAMP)
	$(PY) -m pytest -q -p tests.nbval_plugin --nbval --nbval-current-env \
		--nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 600 notebooks/*.ipynb

sync-check: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks_paired.py

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

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
