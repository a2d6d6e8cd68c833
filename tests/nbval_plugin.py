"""pytest plugin for the nbval run: do not compare stderr streams.

Warnings and progress bars go to stderr and differ between machines and library versions;
the figures we check are printed to stdout. nbval has no switch for this, so we drop stderr
stream outputs from both the stored and the fresh outputs before its comparison.
"""

from __future__ import annotations

from nbval.plugin import IPyNbCell

_compare = IPyNbCell.compare_outputs


def _without_stderr(outputs):
    return [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


def compare_outputs(self, test, ref, skip_compare=None):  # noqa: ANN001
    return _compare(self, _without_stderr(test), _without_stderr(ref), skip_compare)


IPyNbCell.compare_outputs = compare_outputs
