"""The "claims vs what we measured" table that ends every chapter, with computed verdicts.

Chapter: every chapter's last section.

A row pairs a claim (a paper's, or a goal this book set itself) with the numbers a chapter
measured and one or more checks: booleans the chapter computes from those numbers against a
threshold written in code. The verdict is derived from the checks, never typed:

==================  =====================  ===================
checks              paper claim            goal
==================  =====================  ===================
all true            reproduced             met
none true           not reproduced         not met
some true           partly                 partly met
``None``            not tested here        not tested here
==================  =====================  ===================

A claim measured here at a scale the paper's number does not transfer to (a timing on a model 26
times smaller, on CPU cores instead of a GPU) is marked ``comparable=False``: its verdict is "not
comparable at this scale" whatever its checks say, and it counts as neither reproduced nor not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

KINDS = ("paper", "goal")
NOT_COMPARABLE = "not comparable at this scale"
NOT_TESTED = "not tested here"


@dataclass(frozen=True)
class Claim:
    source: str
    """Who claims it: a paper (with its figure or table) or "this book (goal)"."""
    claim: str
    """The claim in one line, with the paper's own numbers where it gives them."""
    measured: str
    """What this chapter measured, formatted from the computed values."""
    checks: bool | Sequence[bool] | None
    """The test(s) of the claim, computed from the measured values; ``None`` when nothing here
    can test it (the row then says why in ``measured``)."""
    kind: str = "paper"
    """``"paper"`` (reproduced / not reproduced) or ``"goal"`` (met / not met)."""
    comparable: bool = True
    """False when the measurement cannot speak to the paper's number at our scale (the module
    docstring); the row's ``measured`` says why."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.comparable and self.kind != "paper":
            raise ValueError("only a paper's claim can be not comparable at this scale; a goal is ours")

    @property
    def verdict(self) -> str:
        return NOT_COMPARABLE if not self.comparable else verdict(self.checks, self.kind)


def verdict(checks: bool | Sequence[bool] | None, kind: str = "paper") -> str:
    """The verdict of the table in this module's docstring."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if checks is None:
        return NOT_TESTED
    if isinstance(checks, Sequence):
        values = [bool(c) for c in checks]
    else:
        values = [bool(checks)]  # one check: a bool or a numpy bool
    if not values:
        raise ValueError("checks must hold at least one boolean (or be None when nothing can test the claim)")
    if all(values):
        return "reproduced" if kind == "paper" else "met"
    if not any(values):
        return "not reproduced" if kind == "paper" else "not met"
    return "partly" if kind == "paper" else "partly met"


COLUMNS = ("source", "claim", "measured here", "verdict")
"""The columns of a claims table."""


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: source, claim, measured here, verdict."""
    if not claims:
        raise ValueError("claims must not be empty")
    return pd.DataFrame([(c.source, c.claim, c.measured, c.verdict) for c in claims], columns=list(COLUMNS))


# ----------------------------------------------------------------------------------------
# The reproduction report: every chapter's claims table, read back from its executed notebook
# ----------------------------------------------------------------------------------------
class _TableParser(HTMLParser):
    """The cells of the first HTML table in a string (pandas' ``to_html``), row by row: ``rows``."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._tables = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._tables += 1
        elif tag == "tr" and self._tables == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self._tables == 1 and self.rows:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def stored_claims(notebook: str | Path) -> pd.DataFrame:
    """The claims table an executed chapter notebook (``.ipynb``) shows: the HTML output of its cell
    that calls :func:`claims_table`, parsed back into a frame with :data:`COLUMNS`. Raises
    ``ValueError`` if the notebook has no such output (not executed, or no claims table)."""
    import json

    path = Path(notebook)
    cells = [c for c in json.loads(path.read_text())["cells"]
             if c["cell_type"] == "code" and "claims_table(" in "".join(c["source"])]
    for cell in reversed(cells):
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html is None:
                continue
            rows = _TableParser("".join(html)).rows
            header, body = rows[0], rows[1:]
            if [h for h in header if h] != list(COLUMNS):
                continue
            return pd.DataFrame([r[-len(COLUMNS):] for r in body], columns=list(COLUMNS))
    raise ValueError(f"{path.name} shows no claims table; execute it (make nb NB={path.with_suffix('.py')})")


def reproduction_report(notebooks_dir: str | Path) -> pd.DataFrame:
    """Every chapter's stored claims table, one row per claim, with its ``chapter`` (the notebook's
    stem) in front; chapters without a claims table are skipped."""
    frames = []
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        try:
            frame = stored_claims(path)
        except ValueError:
            continue
        frames.append(frame.assign(chapter=path.stem)[["chapter", *COLUMNS]])
    if not frames:
        raise ValueError(f"no executed chapter with a claims table in {notebooks_dir}")
    return pd.concat(frames, ignore_index=True)
