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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

KINDS = ("paper", "goal")


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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def verdict(self) -> str:
        return verdict(self.checks, self.kind)


def verdict(checks: bool | Sequence[bool] | None, kind: str = "paper") -> str:
    """The verdict of the table in this module's docstring."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if checks is None:
        return "not tested here"
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


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: source, claim, measured here, verdict."""
    if not claims:
        raise ValueError("claims must not be empty")
    return pd.DataFrame([(c.source, c.claim, c.measured, c.verdict) for c in claims],
                        columns=["source", "claim", "measured here", "verdict"])
