"""pytest plugin for the nbval run: compare outputs number by number, and ignore stderr.

Two changes to nbval's comparison, so that a stored notebook passes on any x86-64 CPU and not
only on the one that executed it:

1. **stderr is dropped** from both the stored and the fresh outputs. Warnings and progress bars
   go there and differ between machines and library versions; the figures we check go to stdout.
2. **Numbers are compared within a tolerance; words exactly.** Each text output (stdout,
   ``text/plain``, ``text/html``) is split into number tokens and the text between them. The text
   must match exactly (runs of white space count as one space, since a column of a printed table
   widens when 9.99 becomes 10.0). Two numbers match when they differ by at most
    - ``REL_TOL`` (1e-3) of the larger magnitude, or
    - one unit in the last printed digit, for a number printed with a decimal point or an exponent
      (42.22 vs 42.23 passes; 42.2 vs 43.1 fails).
   Integers carry counts, indices and verdict tallies, so they get the relative tolerance only:
   17 vs 18 fails, 1000000 vs 1000400 passes. The number of tokens must agree, so a missing row or
   an extra column fails.

nbval has no hook for either, so ``IPyNbCell.compare_outputs`` is replaced by one that groups
outputs the way nbval does (by MIME type, order kept within each) and calls :func:`texts_match`.
"""

from __future__ import annotations

import re
from collections import defaultdict

from nbval.plugin import IPyNbCell, transform_streams_for_comparison

REL_TOL = 1e-3
# A signed decimal or integer with an optional exponent, standing alone: digits glued to letters
# (x0, 64x64, R2) stay part of the text and must match exactly; "4.5." ending a sentence is the
# number 4.5 and "section 4." the integer 4.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d+|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w)(?!\.\d)")
_SPACE = re.compile(r"\s+")


def tokenize(text: str) -> list[str | float]:
    """Split ``text`` into alternating text runs (white space folded) and numbers (kept as the
    printed string, so the last digit's unit is known)."""
    tokens: list[str | float] = []
    last = 0
    for match in NUMBER.finditer(text):
        tokens.append(_SPACE.sub(" ", text[last:match.start()]).strip())
        tokens.append(_Number(match.group()))
        last = match.end()
    tokens.append(_SPACE.sub(" ", text[last:]).strip())
    return tokens


class _Number(str):
    """A printed number: its value and the unit of its last printed digit (None for integers)."""

    @property
    def value(self) -> float:
        return float(self)

    @property
    def last_digit_unit(self) -> float | None:
        mantissa, _, exponent = self.lower().partition("e")
        if "." not in mantissa and not exponent:
            return None
        decimals = len(mantissa.partition(".")[2])
        return 10.0 ** (int(exponent or 0) - decimals)


def numbers_match(ref: _Number, new: _Number) -> bool:
    """The tolerance rule of this module's docstring."""
    a, b = ref.value, new.value
    tolerance = REL_TOL * max(abs(a), abs(b))
    units = [u for u in (ref.last_digit_unit, new.last_digit_unit) if u is not None]
    if units:
        tolerance = max(tolerance, max(units) * (1 + 1e-9))
    return abs(a - b) <= tolerance


def first_difference(ref: str, new: str) -> str | None:
    """None when ``new`` matches ``ref`` under the rules above, else a one-line reason."""
    if not isinstance(ref, str) or not isinstance(new, str):
        return None if ref == new else "outputs differ"
    ref_tokens, new_tokens = tokenize(ref), tokenize(new)
    for i, (r, n) in enumerate(zip(ref_tokens, new_tokens)):
        if isinstance(r, _Number) != isinstance(n, _Number):
            return f"token {i}: {r!r} became {n!r}"
        if isinstance(r, _Number):
            if not numbers_match(r, n):
                return f"number {r} became {n} (beyond tolerance)"
        elif r != n:
            return f"text {r!r} became {n!r}"
    if len(ref_tokens) != len(new_tokens):
        return f"{len(ref_tokens)} tokens became {len(new_tokens)} (a row or column added or missing)"
    return None


def texts_match(ref: str, new: str) -> bool:
    return first_difference(ref, new) is None


def _without_stderr(outputs):
    return [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


def _by_key(cell: IPyNbCell, outputs, skip_compare) -> dict[str, list]:
    """nbval's grouping: every output key except ``data`` and skipped ones, with ``data`` flattened
    to its MIME types; each key keeps its outputs in order."""
    grouped = defaultdict(list)
    for output in outputs:
        for key, value in output.items():
            if key in skip_compare:
                continue
            if key == "data":
                for mime, payload in value.items():
                    if mime not in skip_compare:
                        grouped[mime].append(cell.sanitize(payload))
            else:
                grouped[key].append(cell.sanitize(value))
    return grouped


def compare_outputs(self, test, ref, skip_compare=None):  # noqa: ANN001
    skip_compare = skip_compare or self.parent.skip_compare
    new = _by_key(self, transform_streams_for_comparison(_without_stderr(test)), skip_compare)
    stored = _by_key(self, transform_streams_for_comparison(_without_stderr(ref)), skip_compare)
    self.comparison_traceback = []
    if set(new) != set(stored):
        self.comparison_traceback.append(
            f"output fields differ: stored {sorted(stored)}, new {sorted(new)}")
        return False
    for key, stored_values in stored.items():
        if len(stored_values) != len(new[key]):
            self.comparison_traceback.append(
                f'{len(stored_values)} stored outputs for "{key}", {len(new[key])} new ones')
            return False
        for stored_value, new_value in zip(stored_values, new[key]):
            reason = first_difference(stored_value, new_value)
            if reason is not None:
                self.comparison_traceback.append(f'"{key}": {reason}')
                self.format_output_compare(key, stored_value, new_value)
                return False
    return True


IPyNbCell.compare_outputs = compare_outputs
