"""The model zoo: one name, two profiles.

Chapter: "Diffusion in one notebook" (and every later chapter that loads a model).

========  =================================================================================
profile   what ``load_pixel_ddpm(name)`` returns
========  =================================================================================
tiny      our weights from ``fashionlab/zoo/weights/<name>.safetensors`` (fp16, sha256 checked
          against ``MANIFEST.json``) with the config in ``<name>.json``; loaded in fp32
full      a public diffusers checkpoint from the Hugging Face hub (see :data:`REGISTRY`)
========  =================================================================================

Offline, a ``full`` load fails at once with a message that says to use ``tiny``. Every ``full``
path takes ``source=`` (a local folder in the hub layout), which is how the tests exercise it
with random-weight models of the same class.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import config

ZOO_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = ZOO_DIR / "weights"
MANIFEST_PATH = ZOO_DIR / "MANIFEST.json"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str
    """What the loader builds: ``"pixel-ddpm"`` (UNet2DModel + DDPMScheduler), ``"clip"`` (open_clip),
    ``"oracle"``, ``"parser"`` (our evaluators), ``"category-vit"`` (chapter 05's supervised backbone) or
    ``"attrnet"`` (chapter 05's attribute classifier, which guides chapter 06's edits)."""
    full_hub_id: str | None
    """The ``full``-profile checkpoint on the hub (None: the evaluators grade Garments images and use
    the same shipped weights under both profiles)."""
    full_subfolders: tuple[str, str] | None
    """(unet, scheduler) subfolders of the hub repository, or None for a flat layout."""
    description: str


REGISTRY: dict[str, ZooEntry] = {
    "garments-ddpm-64": ZooEntry(
        name="garments-ddpm-64",
        kind="pixel-ddpm",
        full_hub_id="google/ddpm-celebahq-256",
        full_subfolders=("unet", "scheduler"),
        description=(
            "The 'off-the-shelf' unconditional pixel DDPM. tiny: a 4.3M-parameter UNet2DModel at 64x64 trained "
            "by recipe garments-ddpm-64 on in-domain Garments only. full: google/ddpm-celebahq-256 (Ho et al.'s "
            "256x256 CelebA-HQ DDPM in diffusers format, the model the thesis (003) edits). Paper 000 used the ADM "
            "ImageNet 256x256 unconditional model; a community diffusers port "
            "(xutongda/adm_imagenet_256x256_unconditional, learned variance, 6 output channels) can be passed as "
            "hub_id=..., and PixelDenoiser splits its output."
        ),
    ),
    "garments-clip-s": ZooEntry("garments-clip-s", "clip", "ViT-B-16 (openai)", None,
                                "Tiny open_clip model trained on Garments of every style and extra; full: ViT-B-16."),
    "garments-clip-b": ZooEntry("garments-clip-b", "clip", "ViT-B-16 (openai)", None,
                                "Larger tiny CLIP for the model-size ablation of 000 (Table 4); full: ViT-B-16."),
    "garments-oracle": ZooEntry("garments-oracle", "oracle", None, None,
                                "Independent small-ResNet attribute classifier that grades edits (never guides)."),
    "garments-parser": ZooEntry("garments-parser", "parser", None, None,
                                "Small U-Net part parser (background, torso, sleeves, neck, lower, detail)."),
    **{f"garments-vit-sup-{size}": ZooEntry(
        f"garments-vit-sup-{size}", "category-vit", None, None,
        f"The garments-clip-{size} image-tower ViT trained on category + style labels only: the 'ImageNet' "
        "initialisation of chapter 05. full: an ImageNet ViT-B/16 (timm) is the real counterpart; not wired.")
       for size in ("s", "b")},
    "garments-attrnet": ZooEntry(
        "garments-attrnet", "attrnet", None, None,
        "AttributeNet (ViT + one attention-pooling query per attribute) that guides the edits of chapter 06; "
        "the best variant of chapter 05. full: train the same recipe on a ViT-B-16 CLIP with real labels."),
}


@dataclass
class PixelDDPM:
    """A loaded pixel-space diffusion model: the UNet, its noise schedule and where it came from."""

    unet: torch.nn.Module
    scheduler: object
    name: str
    profile: str
    source: str

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size)


def _entry(name: str) -> ZooEntry:
    if name not in REGISTRY:
        raise ValueError(f"unknown zoo model {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path = MANIFEST_PATH) -> dict:
    if not path.is_file():
        return {"models": {}}
    return json.loads(path.read_text())


def write_manifest(manifest: dict, path: Path = MANIFEST_PATH) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def tiny_files(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """(weights, config) paths of a tiny model."""
    return weights_dir / f"{name}.safetensors", weights_dir / f"{name}.json"


def verify_file(name: str, weights_dir: Path = WEIGHTS_DIR, manifest_path: Path = MANIFEST_PATH) -> Path:
    """Check that ``name``'s weights exist and match the sha256 in the manifest; return the path."""
    weights, cfg = tiny_files(name, weights_dir)
    record = read_manifest(manifest_path)["models"].get(name)
    if record is None:
        raise FileNotFoundError(
            f"zoo model {name!r} has no entry in {manifest_path.name}; it has not been trained and exported yet "
            f"(python -m fashionlab.zoo train {name}, then python -m fashionlab.zoo export {name})"
        )
    for path in (weights, cfg):
        if not path.is_file():
            raise FileNotFoundError(f"zoo model {name!r}: missing file {path}; reinstall fashionlab or re-export it")
    actual = sha256_of(weights)
    if actual != record["sha256"]:
        raise ValueError(
            f"zoo model {name!r}: checksum mismatch for {weights.name} (expected sha256 {record['sha256'][:12]}..., "
            f"got {actual[:12]}...); the file is corrupt or was replaced. Reinstall fashionlab or re-export the model."
        )
    return weights


def load_pixel_ddpm(
    name: str = "garments-ddpm-64",
    profile: str | None = None,
    device: str | torch.device | None = None,
    source: str | Path | None = None,
    hub_id: str | None = None,
    weights_dir: Path = WEIGHTS_DIR,
    manifest_path: Path = MANIFEST_PATH,
) -> PixelDDPM:
    """Load a pixel DDPM by zoo name under ``profile`` (default: the active profile), in fp32, eval mode.

    ``full``: ``source`` may be a local folder in the hub layout (for offline tests or a
    pre-downloaded copy); ``hub_id`` overrides the registry's checkpoint.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    entry = _entry(name)
    if entry.kind != "pixel-ddpm":
        raise ValueError(f"zoo model {name!r} is a {entry.kind}, not a pixel-ddpm")
    profile = config.get_profile() if profile is None else profile
    if profile not in config.PROFILES:
        raise ValueError(f"profile must be one of {config.PROFILES}, got {profile!r}")
    device = config.get_device(device)

    if profile == "tiny":
        state, cfg = load_tiny_state(name, weights_dir, manifest_path)
        unet = UNet2DModel(**cfg["unet"])
        unet.load_state_dict(state, strict=True)
        scheduler = DDPMScheduler(**cfg["scheduler"])
        where = str(tiny_files(name, weights_dir)[0])
    else:
        subfolders = entry.full_subfolders
        if source is not None:
            where = str(source)
            if not Path(source).is_dir():
                raise FileNotFoundError(f"source folder {source} does not exist")
        else:
            where = hub_id or entry.full_hub_id
            config.require_hub(f"Loading {name!r} under the 'full' profile ({where})")
        unet = UNet2DModel.from_pretrained(where, subfolder=subfolders[0] if subfolders else None,
                                           torch_dtype=torch.float32)
        scheduler = DDPMScheduler.from_pretrained(where, subfolder=subfolders[1] if subfolders else None)
    unet = unet.to(device).eval()
    return PixelDDPM(unet, scheduler, name, profile, where)


def export_weights(name: str, module: torch.nn.Module, recipe_config: dict, record: dict,
                   weights_dir: Path = WEIGHTS_DIR, manifest_path: Path = MANIFEST_PATH) -> dict:
    """Write ``module``'s state as fp16 safetensors plus its config, and record it in the manifest.

    ``record`` holds the training facts (recipe, data seed, minutes, steps, final loss, metrics);
    the sha256 and size are added here. Returns the manifest entry.
    """
    from safetensors.torch import save_file

    weights, cfg_path = tiny_files(name, weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in module.state_dict().items()}
    save_file(state, str(weights), metadata={"name": name, "format": "pt"})
    cfg_path.write_text(json.dumps(recipe_config, indent=2, sort_keys=True) + "\n")
    manifest = read_manifest(manifest_path)
    entry = dict(record)
    entry.update({"file": weights.name, "config": cfg_path.name, "sha256": sha256_of(weights),
                  "bytes": weights.stat().st_size,
                  "parameters": int(sum(p.numel() for p in module.parameters()))})
    manifest["models"][name] = entry
    write_manifest(manifest, manifest_path)
    return entry


def load_tiny_state(name: str, weights_dir: Path = WEIGHTS_DIR,
                    manifest_path: Path = MANIFEST_PATH) -> tuple[dict, dict]:
    """(fp32 state dict, config) of a shipped tiny model, after the sha256 check."""
    from safetensors.torch import load_file

    weights = verify_file(name, weights_dir, manifest_path)
    cfg = json.loads(tiny_files(name, weights_dir)[1].read_text())
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    return state, cfg


def supervised_builders() -> dict[str, type]:
    """Model builder per supervised zoo kind (the oracle, the parser, the category ViT, the attribute
    classifier)."""
    from ..models.attrnet import attrnet_for
    from ..models.attrnet_training import CategoryViT
    from ..models.oracle import GarmentOracle
    from ..models.parser import GarmentParser

    return {"oracle": GarmentOracle, "parser": GarmentParser, "category-vit": CategoryViT, "attrnet": attrnet_for}


def load_evaluator(name: str, device: str | torch.device | None = None, weights_dir: Path = WEIGHTS_DIR,
                   manifest_path: Path = MANIFEST_PATH) -> torch.nn.Module:
    """A shipped supervised model in fp32 and eval mode: the oracle (``garments-oracle``), the parser
    (``garments-parser``), a category ViT (``garments-vit-sup-s``) or the guidance classifier
    (``garments-attrnet``). They work on Garments images, so both profiles use the shipped weights."""
    entry = _entry(name)
    builders = supervised_builders()
    if entry.kind not in builders:
        raise ValueError(f"zoo model {name!r} is a {entry.kind}, not one of {sorted(builders)}")
    state, cfg = load_tiny_state(name, weights_dir, manifest_path)
    module = builders[entry.kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model"].items()})
    module.load_state_dict(state, strict=True)
    return module.to(config.get_device(device)).eval()


def list_models() -> list[dict]:
    """One dict per registry entry: name, kind, whether tiny weights are present, the full hub id."""
    manifest = read_manifest()["models"]
    rows = []
    for name, entry in REGISTRY.items():
        rows.append({"name": name, "kind": entry.kind, "tiny": name in manifest and tiny_files(name)[0].is_file(),
                     "full": entry.full_hub_id})
    return rows


def verify_all(weights_dir: Path | None = None, manifest_path: Path | None = None) -> dict[str, str]:
    """Hash and load every shipped tiny model; returns {name: "ok" | error message}. A missing or
    empty manifest is an error (``FileNotFoundError``), not an empty success: it means the package's
    data files did not install."""
    weights_dir = weights_dir or WEIGHTS_DIR
    manifest_path = manifest_path or MANIFEST_PATH
    if not manifest_path.is_file():
        raise FileNotFoundError(f"the zoo manifest {manifest_path} is missing, so no shipped model can be "
                                "checked; reinstall fashionlab (its package data holds the manifest)")
    models = read_manifest(manifest_path)["models"]
    if not models:
        raise FileNotFoundError(f"the zoo manifest {manifest_path} lists no models")
    results = {}
    for name in models:
        try:
            kind = _entry(name).kind
            if kind == "pixel-ddpm":
                load_pixel_ddpm(name, profile="tiny", device="cpu", weights_dir=weights_dir, manifest_path=manifest_path)
            elif kind == "clip":
                from ..models.clip import load_clip

                load_clip(name, profile="tiny", device="cpu", weights_dir=weights_dir, manifest_path=manifest_path)
            else:
                load_evaluator(name, device="cpu", weights_dir=weights_dir, manifest_path=manifest_path)
            results[name] = "ok"
        except (FileNotFoundError, ValueError) as err:
            results[name] = f"FAILED: {err}"
    return results
