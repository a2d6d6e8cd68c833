"""Thin resumable CLIs that precompute each chapter's tables into :func:`fashionlab.config.results_dir`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .. import config


def results_file(chapter: str, part: str, parts: Sequence[str]) -> Path:
    """``results_dir() / "<chapter>_<part>.json"``, after checking ``part`` is one of ``parts``."""
    if part not in parts:
        raise ValueError(f"part must be one of {tuple(parts)}, got {part!r}")
    return config.results_dir() / f"{chapter}_{part}.json"


def read_results_file(path: Path, module: str, part: str) -> dict:
    """The content of a results file, or a ``FileNotFoundError`` naming the CLI that writes it."""
    if not path.is_file():
        command = f"python -m fashionlab.experiments.{module}" + (f" {part}" if part else "")
        raise FileNotFoundError(f"no results file at {path}; run {command}")
    return json.loads(path.read_text())
