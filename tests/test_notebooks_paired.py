"""Every notebooks/*.py (the source we edit) is paired with an .ipynb (the executed, committed
output) and the two hold the same cells."""

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9]*.py"))


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py found"
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9]*.ipynb")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_paired_and_in_sync(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{source.name} has no paired {ipynb.name}; run `make nb NB={source}`"
    nb = jupytext.read(ipynb)
    formats = nb.metadata.get("jupytext", {}).get("formats", "")
    assert formats == "ipynb,py:percent", f"{ipynb.name}: jupytext formats are {formats!r}"
    expected = jupytext.writes(nb, fmt="py:percent")
    actual = source.read_text()
    assert actual == expected, f"{source.name} and {ipynb.name} differ; run `make nb NB={source}`"
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code" and c.source.strip()), \
        f"{ipynb.name} has unexecuted code cells; run `make nb NB={source}`"
    kernel = nb.metadata.get("kernelspec", {})
    assert kernel.get("name") == "python3" and kernel.get("language") == "python", \
        f"{ipynb.name} needs the kernelspec the Makefile installs (name python3); add it to {source.name}'s header"
