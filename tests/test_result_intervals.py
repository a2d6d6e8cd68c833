"""Every committed FID, KID and IS lies inside its own interval.

The intervals of these statistics come from :func:`fashionlab.metrics.jackknife_ci`, which is
centred on the estimate. An interval that misses its estimate was made by the old percentile
bootstrap, whose duplicated rows bias KID and FID upward. Such a file is listed in SUPERSEDED with
the command that regenerates it, and the list may only shrink.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionlab import config

STATISTICS = ("fid", "kid", "inception_score")
SUPERSEDED = {
    "08_runs.json": "python -m fashionlab.experiments.ch08_lora runs (the LoRA sweep, about 90 min on 2 cores); "
                    "its grades are read after each epoch of training, so the intervals cannot be redone "
                    "without the runs",
    "08_compare.json": "python -m fashionlab.experiments.ch08_lora compare, together with runs: the two files "
                       "must give one base-model KID and FID",
    "10_table.json": "python -m fashionlab.experiments.ch10_zip table, after the encoders are retrained",
    "10_ablation.json": "python -m fashionlab.experiments.ch10_zip ablation, after the encoders are retrained",
}


def intervals(data, path: str = ""):
    """(where, statistic, value, low, high) for every interval in a results file: ``x`` beside
    ``x_ci = [low, high]``, or ``x = [value, low, high]``."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in STATISTICS:
                if isinstance(value, list) and len(value) == 3:
                    yield path, key, *value
                elif isinstance(value, (int, float)) and isinstance(data.get(f"{key}_ci"), list):
                    yield path, key, value, *data[f"{key}_ci"]
            yield from intervals(value, f"{path}/{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from intervals(value, f"{path}[{i}]")


def outside(path: Path) -> list[str]:
    return [f"{where} {name} {value} not in [{low}, {high}]"
            for where, name, value, low, high in intervals(json.loads(path.read_text())) if not low <= value <= high]


FILES = sorted(config.results_dir().glob("*.json"))


def test_the_walk_finds_the_intervals_it_must_check():
    found = {path.name: sum(1 for _ in intervals(json.loads(path.read_text()))) for path in FILES}
    for name in ("08_compare.json", "10_table.json", "10_ablation.json"):
        assert found.get(name, 0) >= 6, found
    assert list(intervals({"a": {"kid": 2.0, "kid_ci": [1.0, 3.0]}, "fid": [5.0, 6.0, 7.0]})) == [
        ("/a", "kid", 2.0, 1.0, 3.0), ("", "fid", 5.0, 6.0, 7.0)]


@pytest.mark.parametrize("path", [p for p in FILES if p.name not in SUPERSEDED], ids=lambda p: p.name)
def test_every_committed_interval_contains_its_estimate(path):
    assert not outside(path), f"{path.name}: regenerate it with its experiment's command"


@pytest.mark.parametrize("name", sorted(SUPERSEDED))
def test_superseded_files_are_still_stale(name):
    """Once a listed file is regenerated, take it off SUPERSEDED."""
    path = config.results_dir() / name
    assert path.is_file() and outside(path), f"{name} now passes: remove it from SUPERSEDED"
