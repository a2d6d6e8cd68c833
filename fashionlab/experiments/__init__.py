"""Thin resumable CLIs that precompute each chapter's tables into :func:`fashionlab.config.results_dir`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .. import config
from ..config import write_json_atomic


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


def start_results_file(out: Path, meta: dict, records_key: str = "records") -> dict:
    """A resumable results file: write ``meta`` and an empty ``records_key`` dict into a new ``out``,
    or check that an existing one was made with the same ``meta`` (its other records, such as its
    batches, are not settings). Returns the file's content."""
    meta = json.loads(json.dumps(meta))  # as the file holds it: tuples are lists
    if out.is_file():
        stored = json.loads(out.read_text())
        held = {k: stored.get(k) for k in meta}
        if held != meta:
            raise ValueError(f"{out} was made with other settings ({held}); delete it or use another file")
        return stored
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {**meta, records_key: {}}
    write_json_atomic(data, out)
    return data
