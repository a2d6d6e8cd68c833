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
    ("ranges 0.50-0.65", "ranges 0.51-0.65"),     # two significant digits: a rounding flip passes
    ("p = 0.050", "p = 0.051"),
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
    ("success 0.6", "success 0.5"),               # one significant digit: no digit to spare
    ("p = 0.05", "p = 0.06"),
    ("gap 0.000", "gap 0.001"),                   # a zero has no significant digit
    ("lr 1e-03", "lr 2e-03"),
])
def test_fails_beyond_tolerance(stored, new):
    assert not texts_match(stored, new)
    assert first_difference(stored, new)


def test_significant_digits():
    from tests.nbval_plugin import _Number

    assert [_Number(t).significant_digits for t in ("0.050", "0.5", "0.000", "-12.30", "1e-03", "1.0e-03")] == \
        [2, 1, 0, 4, 1, 2]


def _png(draw) -> str:  # noqa: ANN001
    """A base64 PNG of a matplotlib figure drawn by ``draw(ax)``, as a notebook stores it."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    draw(ax)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def test_figures_compare_loosely():
    from tests.nbval_plugin import image_difference

    line = _png(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.5]))
    assert image_difference(line, line) is None
    assert image_difference(line, _png(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.52]))) is None  # a nudge
    changed = image_difference(line, _png(lambda ax: ax.imshow([[0, 1], [1, 0]], cmap="gray")))
    assert changed is not None and "figure changed" in changed
    blank = image_difference(line, _png(lambda ax: ax.axis("off")))
    assert blank is not None


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


def _nbval(notebook):  # noqa: ANN001, ANN202
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.nbval_plugin", "--nbval",
                           "--nbval-current-env", "-p", "no:cacheprovider", str(notebook)],
                          cwd=root, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("stored, passes", [("PSNR 42.22 dB\n", True), ("PSNR 43.1 dB\n", False),
                                            ("PSNR 42.23 dB (gradient)\n", False)])
def test_nbval_uses_the_comparator(tmp_path, stored, passes):
    """End to end: nbval with this plugin passes a stored number within tolerance and fails one
    beyond it, or a changed word."""
    notebook = tmp_path / "check.ipynb"
    _notebook(notebook, 'print("PSNR 42.23 dB")', stored)
    result = _nbval(notebook)
    assert (result.returncode == 0) == passes, result.stdout[-2000:]


def test_nbval_kernels_run_offline(tmp_path):
    """A notebook's kernel runs under the network guard: a cell that reaches out fails, even when
    it catches the refusal and prints what was stored."""
    code = ("import socket\ntry:\n    socket.getaddrinfo('huggingface.co', 443)\nexcept OSError as error:\n"
            "    print('offline:', type(error).__name__)")
    notebook = tmp_path / "reach.ipynb"
    _notebook(notebook, code, "offline: gaierror\n")
    result = _nbval(notebook)
    assert result.returncode != 0 and "tried to use the network" in result.stdout, result.stdout[-2000:]
    _notebook(notebook, "import socket\nprint(socket.gethostbyname('localhost'))", "127.0.0.1\n")
    assert _nbval(notebook).returncode == 0  # loopback is not the network


@pytest.mark.parametrize("same, passes", [(True, True), (False, False)])
def test_nbval_compares_figures(tmp_path, same, passes):
    import nbformat

    code = ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(3, 2), dpi=50)\n"
            "ax.plot([0, 1, 2], [0, 1, 0.5])\nplt.show()")
    notebook = tmp_path / "figure.ipynb"
    _notebook(notebook, code, "")
    run = nbformat.read(notebook, as_version=4)
    from nbclient import NotebookClient

    NotebookClient(run, kernel_name="python3").execute()  # the figure as this machine draws it
    if not same:
        for output in run.cells[0].outputs:
            if "image/png" in output.get("data", {}):
                output["data"]["image/png"] = _png(lambda ax: ax.imshow([[0, 1], [1, 0]], cmap="gray"))
    nbformat.write(run, notebook)
    result = _nbval(notebook)
    assert (result.returncode == 0) == passes, result.stdout[-2000:]
