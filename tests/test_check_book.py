"""``make check-book`` on a tiny fixture book built by Jupyter Book with the real book's MathJax
settings: a good page passes; a broken image, a Traceback in an output and maths left as raw TeX
each fail. Needs Chromium and the pinned MathJax, so it runs under ``make check-book`` (which sets
``FASHIONLAB_CHECK_BOOK=1`` after installing both) and is skipped by ``make test``."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import check_book

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "book" / "_static" / "mathjax"

pytestmark = pytest.mark.skipif(os.environ.get("FASHIONLAB_CHECK_BOOK") != "1",
                                reason="needs Chromium and the pinned MathJax: run by make check-book")

GOOD = """# Good page

Inline maths $\\bar\\alpha_t = \\prod_s (1 - \\beta_s)$ and a display:

$$
x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\varepsilon
$$

![a red square](red.png)
"""


def _notebook(text: str) -> dict:
    return {"cells": [{"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "source": "1 / 0",
                       "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def fixture_book(tmp_path_factory) -> Path:
    book = tmp_path_factory.mktemp("book")
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 0, 0)).save(book / "red.png")
    (book / "good.md").write_text(GOOD)
    (book / "broken_image.md").write_text("# Broken image\n\n![gone](missing.png)\n")
    (book / "raw_tex.md").write_text("# Raw TeX\n\n```{raw} html\n<p>left as \\(x^2\\) by a page without MathJax</p>\n```\n")
    (book / "traceback.ipynb").write_text(json.dumps(_notebook("Traceback (most recent call last):\nZeroDivisionError\n")))
    (book / "fine_output.ipynb").write_text(json.dumps(_notebook("refused: neckline does not apply\n")))
    shown = _notebook("")
    shown["cells"][0]["source"] = 'import sys\nif "google.colab" in sys.modules:\n    print("installing")\n'
    hidden = json.loads(json.dumps(shown))
    hidden["cells"][0]["metadata"]["tags"] = ["remove-cell"]
    (book / "install_shown.ipynb").write_text(json.dumps(shown))
    (book / "install_hidden.ipynb").write_text(json.dumps(hidden))
    (book / "_toc.yml").write_text("format: jb-book\nroot: good\nchapters:\n- file: broken_image\n- file: raw_tex\n"
                                   "- file: traceback\n- file: fine_output\n- file: install_shown\n"
                                   "- file: install_hidden\n")
    config = (ROOT / "_config.yml").read_text()
    start = config.index("sphinx:")
    (book / "_config.yml").write_text("title: Fixture\nexecute:\n  execute_notebooks: 'off'\nparse:\n"
                                      "  myst_enable_extensions: [dollarmath]\n" + config[start:].split("\n# ")[0])
    shutil.copytree(MATHJAX, book / "book" / "_static" / "mathjax")
    jb = Path(sys.executable).parent / "jupyter-book"
    subprocess.run([str(jb), "build", str(book), "--quiet"], check=True, capture_output=True)
    return book / "_build" / "html"


def test_the_fixture_uses_the_books_own_mathjax(fixture_book):
    html = (fixture_book / "good.html").read_text()
    assert "_static/mathjax/tex-svg.js" in html and "cdn" not in html.split("tex-svg.js")[0][-200:]


def test_a_good_page_passes_with_typeset_maths(fixture_book, tmp_path):
    report = check_book.check_book(fixture_book, ["good", "fine_output", "install_hidden"], tmp_path / "shots",
                                   ("good",))
    assert report == {"good": [], "fine_output": [], "install_hidden": []}
    assert (tmp_path / "shots" / "good.png").stat().st_size > 10_000
    page = check_book._Page()
    page.feed(check_book.render(fixture_book / "good.html", check_book.chromium(), str(tmp_path / "profile")))
    assert page.typeset == 2  # inline and display maths, both typeset offline


@pytest.mark.parametrize("name, expected", [("broken_image", "image does not resolve"),
                                            ("raw_tex", "maths left as raw TeX"),
                                            ("traceback", "an output says 'Traceback'"),
                                            ("install_shown", "shows a notebook's Colab install cell"),
                                            ("missing_page", "page missing")])
def test_a_bad_page_fails(fixture_book, name, expected):
    report = check_book.check_book(fixture_book, [name])
    assert any(expected in problem for problem in report[name]), report


def test_the_command_line_exits_non_zero_on_a_bad_book(fixture_book, capsys):
    toc = fixture_book.parent.parent / "_toc.yml"
    assert check_book.toc_pages(toc) == ["good", "broken_image", "raw_tex", "traceback", "fine_output",
                                         "install_shown", "install_hidden"]
    assert check_book.main([str(fixture_book), "--toc", str(toc), "--shot", "good",
                            "--screenshots", str(fixture_book.parent / "shots")]) == 1
    out = capsys.readouterr().out
    assert "3 passed, 4 failed" in out


def test_a_search_box_in_the_sidebar_is_a_second_one(tmp_path):
    sidebar = ('<div id="pst-primary-sidebar"><div><button class="btn search-button-field">Search</button></div></div>')
    header = '<header><button class="btn search-button-field">Search</button></header><div id="pst-primary-sidebar"></div>'
    assert any("second search box" in p for p in check_book.problems(tmp_path / "x.html", f"<body>{sidebar}</body>"))
    assert check_book.problems(tmp_path / "x.html", f"<body>{header}<p>after</p></body>") == []
