"""Shipping a trained model to the zoo: fp16 safetensors, its JSON config, its manifest record
(sha256, size, parameters, training facts, metrics) and its loss curve. Every recipe's export
goes through :func:`ship`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import registry


def json_config(model_kwargs: dict) -> dict:
    """A model's constructor arguments as the JSON config shipped beside its weights (tuples become
    lists; the loader turns them back)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()}


def export_weights(name: str, module: torch.nn.Module | dict[str, torch.Tensor], recipe_config: dict, record: dict,
                   weights_dir: Path = registry.WEIGHTS_DIR, manifest_path: Path = registry.MANIFEST_PATH,
                   metadata: dict[str, str] | None = None) -> dict:
    """Write ``module``'s state as fp16 safetensors plus its config, and record it in the manifest.

    ``record`` holds the training facts (recipe, data seed, minutes, steps, final loss, metrics);
    the sha256 and size are added here. ``metadata`` goes into the safetensors header (a LoRA
    adapter's rank and alpha, which diffusers reads back). Returns the manifest entry.
    """
    from safetensors.torch import save_file

    weights, cfg_path = registry.tiny_files(name, weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    source = module if isinstance(module, dict) else module.state_dict()
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in source.items()}
    save_file(state, str(weights), metadata={**(metadata or {}), "name": name, "format": "pt"})
    cfg_path.write_text(json.dumps(recipe_config, indent=2, sort_keys=True) + "\n")
    manifest = registry.read_manifest(manifest_path)
    entry = dict(record)
    entry.update({"file": weights.name, "config": cfg_path.name, "sha256": registry.sha256_of(weights),
                  "bytes": weights.stat().st_size,
                  "parameters": int(sum(v.numel() for v in source.values()) if isinstance(module, dict)
                                    else sum(p.numel() for p in module.parameters()))})
    manifest["models"][name] = entry
    registry.write_manifest(manifest, manifest_path)
    return entry


def round_to_fp16(module: torch.nn.Module) -> torch.nn.Module:
    """Round parameters and float buffers to fp16 in place (kept in fp32): the weights as shipped."""
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(t.half().float())
    return module


def training_record(name: str, state: dict, workdir: Path, batch_size: int, data_seed: int, data: str) -> dict:
    """The training facts every manifest entry carries."""
    return {"recipe": name, "data": data, "data_seed": data_seed,
            "training_minutes": round(float(state["minutes"]), 1), "training_steps": int(state["step"]),
            "batch_size": batch_size, "final_loss": _last_loss(workdir)}


def _last_loss(workdir: Path) -> float | None:
    rows = (workdir / "loss.csv").read_text().strip().splitlines()
    return float(rows[-1].split(",")[1]) if len(rows) > 1 else None


def ship(name: str, module: torch.nn.Module | dict[str, torch.Tensor], cfg: dict, record: dict, workdir: Path, weights_dir: Path | None = None,
         manifest_path: Path | None = None) -> dict:
    """Ship ``module`` (fp16) with its config and manifest record, and the run's loss curve beside it
    (``<name>.loss.csv``, for the chapters' plots)."""
    kwargs = {k: v for k, v in (("weights_dir", weights_dir), ("manifest_path", manifest_path)) if v is not None}
    entry = export_weights(name, module, cfg, record, **kwargs)
    (Path(weights_dir or registry.WEIGHTS_DIR) / f"{name}.loss.csv").write_text((workdir / "loss.csv").read_text())
    return entry
