"""The nbval comparator (tests/nbval_plugin.py): numbers within tolerance, words exactly."""

import pytest

from tests.nbval_plugin import first_difference, texts_match, tokenize


@pytest.mark.parametrize("stored, new", [
    ("PSNR 42.22 dB", "PSNR 42.23 dB"),          # one unit in the last printed digit
    ("loss 0.1234", "loss 0.1235"),
    ("mean 1234.5", "mean 1235.6"),               # relative 1e-3 is larger than the last digit here
    ("-0.000", "0.000"),
    ("lr 1e-03", "lr 1.0e-03"),
    ("9.99  ok", "10.0 ok"),                      # a widening column changes only white space
    ("<td>0.608</td>", "<td>0.609</td>"),
    ("ranges 0.50-0.65", "ranges 0.51-0.65"),
    ("a 64x64 image from garments-ddpm-64", "a 64x64 image from garments-ddpm-64"),
])
def test_passes_within_tolerance(stored, new):
    assert texts_match(stored, new), first_difference(stored, new)


@pytest.mark.parametrize("stored, new", [
    ("PSNR 42.2 dB", "PSNR 43.1 dB"),             # far beyond the last digit
    ("PSNR 42.22 dB", "PSNR 42.30 dB"),            # beyond both relative 1e-3 and the last digit
    ("success 17 of 24", "success 18 of 24"),     # integers are counts: exact
    ("pattern: gradient", "pattern: checked"),    # a changed word
    ("reproduced", "not reproduced"),
    ("a 0.5\nb 0.6\n", "a 0.5\n"),                 # a missing row
    ("x 1 2", "x 1 2 3"),                         # an extra column
    ("a 64x64 image", "a 64x63 image"),           # digits inside a word are text
    ("0.5", "-0.5"),
])
def test_fails_beyond_tolerance(stored, new):
    assert not texts_match(stored, new)
    assert first_difference(stored, new)


def test_tokens_alternate_text_and_numbers():
    assert tokenize("acc 0.87, n=12.") == ["acc", "0.87", ", n=", "12", "."]
    assert tokenize("t=500 x0") == ["t=", "500", "x0"]


def test_html_tables_are_compared_by_cell():
    stored = "<tr><td>ours</td><td>0.608</td><td>4.5</td></tr>"
    assert texts_match(stored, stored.replace("0.608", "0.6085"))
    assert not texts_match(stored, stored.replace("ours", "theirs"))
    assert not texts_match(stored, stored.replace("0.608", "0.650"))


def _notebook(path, code: str, stored: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.parametrize("stored, passes", [("PSNR 42.22 dB\n", True), ("PSNR 43.1 dB\n", False),
                                            ("PSNR 42.23 dB (gradient)\n", False)])
def test_nbval_uses_the_comparator(tmp_path, stored, passes):
    """End to end: nbval with this plugin passes a stored number within tolerance and fails one
    beyond it, or a changed word."""
    import subprocess
    import sys
    from pathlib import Path

    notebook = tmp_path / "check.ipynb"
    _notebook(notebook, 'print("PSNR 42.23 dB")', stored)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.nbval_plugin", "--nbval",
                             "--nbval-current-env", "-p", "no:cacheprovider", str(notebook)],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert (result.returncode == 0) == passes, result.stdout[-2000:]
