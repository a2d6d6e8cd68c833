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
      and at least ``MIN_SIGNIFICANT`` (2) significant digits: 42.22 vs 42.23 and 0.50 vs 0.51 pass
      (a rounding that flips on another CPU), 42.2 vs 43.1 fails, and so does 0.6 vs 0.5: a figure
      printed with one significant digit has no digit to spare, so it must be printed with more
      digits, or as a count, if it can move.
   Integers carry counts, indices and verdict tallies, so they get the relative tolerance only:
   17 vs 18 fails, 1000000 vs 1000400 passes. The number of tokens must agree, so a missing row or
   an extra column fails.
3. **Figures are compared too**, loosely (:func:`image_difference`): both PNGs reduced to
   ``IMAGE_GRID`` x ``IMAGE_GRID`` blocks of mean grey level; the figure fails when its size
   changes by more than ``IMAGE_SIZE_TOL`` pixels, when the blocks differ by more than
   ``IMAGE_TOL`` (mean absolute, grey levels in [0, 1]), or when its ink (1 - grey) has a cosine
   similarity below ``IMAGE_MIN_COSINE`` to the stored ink (a line plot that became blank or
   another plot: thin lines move the mean little). Anti-aliasing, a line nudged by 2 % (cosine
   0.999) or a title added (0.97) pass; a blank figure (0), an image for a plot (0.1) fail. (nbval
   skips images by default.)
4. **The kernels run offline**: every notebook's kernel starts with the unit tests' network guard
   (``tests/offline_guard.py``, installed by an IPython startup file in a throwaway
   ``IPYTHONDIR``); a cell that tried to reach the network fails, naming the address, even if the
   notebook caught the error.

nbval has no hook for any of these, so ``IPyNbCell.compare_outputs`` is replaced by one that groups
outputs the way nbval does (by MIME type, order kept within each) and calls :func:`texts_match` and
:func:`image_difference`, and ``IPyNbCell.runtest`` by one that checks the guard's record.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path

from nbval.plugin import IPyNbCell, NbCellError, transform_streams_for_comparison

REL_TOL = 1e-3
MIN_SIGNIFICANT = 2
IMAGE_GRID, IMAGE_TOL, IMAGE_SIZE_TOL, IMAGE_MIN_COSINE = 16, 0.04, 2, 0.9
IMAGES = ("image/png",)
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

    @property
    def significant_digits(self) -> int:
        """Digits from the first non-zero one on (0.050 has 2, 0.5 has 1, 0.000 none)."""
        digits = self.lower().partition("e")[0].lstrip("+-").replace(".", "")
        return len(digits.lstrip("0"))


def numbers_match(ref: _Number, new: _Number) -> bool:
    """The tolerance rule of this module's docstring."""
    a, b = ref.value, new.value
    tolerance = REL_TOL * max(abs(a), abs(b))
    units = [n.last_digit_unit for n in (ref, new)
             if n.last_digit_unit is not None and n.significant_digits >= MIN_SIGNIFICANT]
    if units:
        tolerance = max(tolerance, max(units) * (1 + 1e-9))
    return abs(a - b) <= tolerance


def _grey_blocks(png: str | bytes):
    """A base64 PNG (as notebooks store it) as its size and ``IMAGE_GRID`` x ``IMAGE_GRID`` block
    means of grey level in [0, 1]."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    data = base64.b64decode(png) if isinstance(png, str) else png
    image = Image.open(io.BytesIO(data)).convert("RGBA")
    white = Image.new("RGBA", image.size, "white")  # transparent figure backgrounds read as white
    grey = np.asarray(Image.alpha_composite(white, image).convert("L").resize((IMAGE_GRID, IMAGE_GRID),
                                                                               Image.BOX), dtype=float) / 255
    return image.size, grey


def image_difference(ref: str | bytes, new: str | bytes) -> str | None:
    """None when the figure ``new`` matches ``ref`` under rule 3 of this module, else a reason."""
    (ref_size, ref_grey), (new_size, new_grey) = _grey_blocks(ref), _grey_blocks(new)
    if max(abs(r - n) for r, n in zip(ref_size, new_size)) > IMAGE_SIZE_TOL:
        return f"figure size {ref_size[0]}x{ref_size[1]} became {new_size[0]}x{new_size[1]}"
    distance = float(abs(ref_grey - new_grey).mean())
    if distance > IMAGE_TOL:
        return f"figure changed: mean grey-level distance {distance:.3f} over {IMAGE_GRID}x{IMAGE_GRID} blocks " \
               f"(tolerance {IMAGE_TOL})"
    ref_ink, new_ink = (1 - ref_grey).ravel(), (1 - new_grey).ravel()
    norms = float((ref_ink @ ref_ink) * (new_ink @ new_ink)) ** 0.5
    cosine = float(ref_ink @ new_ink) / norms if norms > 0 else float(not ref_ink.any() and not new_ink.any())
    if cosine < IMAGE_MIN_COSINE:
        return f"figure changed: cosine similarity of its ink {cosine:.3f} (at least {IMAGE_MIN_COSINE})"
    return None


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
    to its MIME types; each key keeps its outputs in order. Images are not sanitised (the
    sanitiser's patterns could match inside base64)."""
    grouped = defaultdict(list)
    for output in outputs:
        for key, value in output.items():
            if key in skip_compare:
                continue
            if key == "data":
                for mime, payload in value.items():
                    if mime not in skip_compare:
                        grouped[mime].append(payload if mime in IMAGES else cell.sanitize(payload))
            else:
                grouped[key].append(cell.sanitize(value))
    return grouped


def compare_outputs(self, test, ref, skip_compare=None):  # noqa: ANN001
    skip_compare = tuple(k for k in (skip_compare or self.parent.skip_compare) if k not in IMAGES)
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
            compare = image_difference if key in IMAGES else first_difference
            reason = compare(stored_value, new_value)
            if reason is not None:
                self.comparison_traceback.append(f'"{key}": {reason}')
                if key not in IMAGES:
                    self.format_output_compare(key, stored_value, new_value)
                return False
    return True


IPyNbCell.compare_outputs = compare_outputs

_GUARD = Path(__file__).with_name("offline_guard.py")
_ATTEMPTS_FILE: list[Path] = []


def pytest_configure(config) -> None:  # noqa: ANN001
    """Under the tiny profile, start every kernel with the network guard (rule 4): an IPython
    startup file in a throwaway IPYTHONDIR, which the kernels inherit through the environment."""
    if os.environ.get("FASHIONLAB_PROFILE", "tiny") != "tiny" or _ATTEMPTS_FILE:
        return
    ipython_dir = Path(tempfile.mkdtemp(prefix="fashionlab-nbval-ipython-"))
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    attempts = ipython_dir / "network-attempts.txt"
    attempts.touch()
    (startup / "00-offline-guard.py").write_text(
        "# Written by tests/nbval_plugin.py: this kernel runs offline, as the unit tests do.\n"
        "import importlib.util as _util\n"
        f"_spec = _util.spec_from_file_location('fashionlab_offline_guard', {str(_GUARD)!r})\n"
        "_guard = _util.module_from_spec(_spec)\n"
        "_spec.loader.exec_module(_guard)\n"
        f"_guard.install({str(attempts)!r})\n"
        "del _util, _spec, _guard\n")
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    _ATTEMPTS_FILE.append(attempts)


_runtest = IPyNbCell.runtest


def runtest(self) -> None:  # noqa: ANN001
    """nbval's cell run, then a failure if the kernel tried to reach the network meanwhile."""
    if not _ATTEMPTS_FILE:
        return _runtest(self)
    before = _ATTEMPTS_FILE[0].read_text().splitlines()
    try:
        _runtest(self)
    finally:
        tried = _ATTEMPTS_FILE[0].read_text().splitlines()[len(before):]
    if tried:
        raise NbCellError(self.cell_num, f"the notebook's kernel tried to use the network (notebooks run "
                                         f"offline): {tried}", self.cell.source)


IPyNbCell.runtest = runtest
