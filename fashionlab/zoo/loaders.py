"""Loading zoo models: :func:`load` takes a name and returns the model its kind calls for, under
either profile.

Chapter: "Diffusion in one notebook" (and every later chapter that loads a model).

====================  ==============================================  ===================================
kind                  :func:`load` returns                            ``full`` profile
====================  ==============================================  ===================================
``pixel-ddpm``        :class:`PixelDDPM` (UNet2DModel + scheduler)    a diffusers hub checkpoint
``pixel-ddpm-delta``  :class:`PixelDDPM`: its base + an fp16 delta    none shipped: fine-tune it live
``vae``               a diffusers ``AutoencoderKL``                   Stable Diffusion 1.4's VAE
``sd-pipeline``       a diffusers ``StableDiffusionPipeline``         Stable Diffusion 1.4 (or ``hub_id``)
``sd-lora``           its base pipeline with the LoRA adapter active   none shipped: train one live
``clip``              :class:`~fashionlab.models.clip.CLIPBundle`     open_clip ``ViT-B-16`` (OpenAI)
``oracle``,           an ``nn.Module`` in eval mode                   the same shipped weights (they
``parser``,                                                           grade and guide Garments images)
``category-vit``,
``attrnet``,
``extras-judge``
====================  ==============================================  ===================================

A later chapter adds a kind by adding a loader to :data:`LOADERS` (an encoder, say).

Offline, a ``full`` load fails at once with a message that says to use ``tiny``. Every ``full``
path takes ``source=`` (a local folder in the hub layout) or ``pretrained=`` (a local file), which
is how the tests exercise it with random-weight models of the same class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import config
from ..models.attrnet import AttributeNet, attrnet_for
from ..models.category_vit import CategoryViT
from ..models.clip import TINY_MODELS, FULL_MODELS, CLIPBundle, create_clip
from ..models.oracle import GarmentOracle, extras_judge
from ..models.parser import GarmentParser
from ..models.sd import clip_tokenizer, text_encoder_from_clip
from ..methods import zip as zip_method
from ..train.attrnet import INITS
from . import registry


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


def _entry_and_profile(name: str, kind: str, profile: str | None) -> tuple[registry.ZooEntry, str]:
    """``name``'s registry entry, checked to be of ``kind``, and the profile to load it under
    (``profile``, or the active one), checked to be known."""
    entry = registry.entry(name)
    if entry.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(f"zoo model {name!r} is a {entry.kind}, not {article} {kind}")
    profile = config.get_profile() if profile is None else profile
    if profile not in config.PROFILES:
        raise ValueError(f"profile must be one of {config.PROFILES}, got {profile!r}")
    return entry, profile


def load_pixel_ddpm(
    name: str = "garments-ddpm-64",
    profile: str | None = None,
    device: str | torch.device | None = None,
    source: str | Path | None = None,
    hub_id: str | None = None,
    weights_dir: Path = registry.WEIGHTS_DIR,
    manifest_path: Path = registry.MANIFEST_PATH,
) -> PixelDDPM:
    """Load a pixel DDPM by zoo name under ``profile`` (default: the active profile), in fp32, eval mode.

    ``full``: ``source`` may be a local folder in the hub layout (for offline tests or a
    pre-downloaded copy); ``hub_id`` overrides the registry's checkpoint.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    entry, profile = _entry_and_profile(name, "pixel-ddpm", profile)
    device = config.get_device(device)

    if profile == "tiny":
        state, cfg = registry.load_tiny_state(name, weights_dir, manifest_path)
        unet = UNet2DModel(**cfg["unet"])
        unet.load_state_dict(state, strict=True)
        scheduler = DDPMScheduler(**cfg["scheduler"])
        where = str(registry.tiny_files(name, weights_dir)[0])
    else:
        subfolders = entry.full_subfolders
        where = _full_source(name, source, hub_id or entry.full_hub_id)
        unet = UNet2DModel.from_pretrained(where, subfolder=subfolders[0] if subfolders else None,
                                           torch_dtype=torch.float32)
        scheduler = DDPMScheduler.from_pretrained(where, subfolder=subfolders[1] if subfolders else None)
    unet = unet.to(device).eval()
    return PixelDDPM(unet, scheduler, name, profile, where)


def load_clip(name: str = "garments-clip-s", profile: str | None = None, device: str | torch.device | None = None,
              pretrained: str | None = None, weights_dir: Path | None = None,
              manifest_path: Path | None = None) -> CLIPBundle:
    """Load a zoo CLIP in eval mode. ``tiny``: our shipped weights (sha256-checked against the
    manifest; ``weights_dir``/``manifest_path`` point elsewhere, for tests). ``full``: the name's
    counterpart in :data:`~fashionlab.models.clip.FULL_MODELS` (``-s``: ViT-B-16-quickgelu with OpenAI's
    weights; ``-b``: ViT-B-32, LAION-2B), from the hub (``pretrained`` overrides the tag or gives a local file)."""
    profile = config.get_profile() if profile is None else profile
    device = config.get_device(device)
    if name not in TINY_MODELS:
        raise ValueError(f"zoo CLIP models are {TINY_MODELS}, got {name!r}")
    if profile == "tiny":
        where = {k: v for k, v in (("weights_dir", weights_dir), ("manifest_path", manifest_path)) if v is not None}
        weights = registry.verify_file(name, **where) if pretrained is None else Path(pretrained)
        return create_clip(name, str(weights), device)
    if profile != "full":
        raise ValueError(f"profile must be one of {config.PROFILES}, got {profile!r}")
    model_name, tag = FULL_MODELS[name]
    tag = tag if pretrained is None else pretrained
    if not Path(str(tag)).is_file():
        config.require_hub(f"Loading CLIP {model_name} ({tag}) under the 'full' profile", *_clip_source(model_name, tag))
    return create_clip(model_name, tag, device)


SUPERVISED_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {
    "oracle": GarmentOracle, "parser": GarmentParser, "category-vit": CategoryViT, "attrnet": attrnet_for,
    "extras-judge": extras_judge}
"""Model builder per supervised zoo kind (its shipped JSON config holds the keyword arguments)."""


def load_evaluator(name: str, device: str | torch.device | None = None, weights_dir: Path = registry.WEIGHTS_DIR,
                   manifest_path: Path = registry.MANIFEST_PATH) -> torch.nn.Module:
    """A shipped supervised model in fp32 and eval mode: the oracle (``garments-oracle``), the parser
    (``garments-parser``), a category ViT (``garments-vit-sup-s``) or the guidance classifier
    (``garments-attrnet``). They work on Garments images, so both profiles use the shipped weights."""
    entry = registry.entry(name)
    if entry.kind not in SUPERVISED_BUILDERS:
        raise ValueError(f"zoo model {name!r} is a {entry.kind}, not one of {sorted(SUPERVISED_BUILDERS)}")
    state, cfg = registry.load_tiny_state(name, weights_dir, manifest_path)
    module = SUPERVISED_BUILDERS[entry.kind](**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in cfg["model"].items()})
    module.load_state_dict(state, strict=True)
    return module.to(config.get_device(device)).eval()


def apply_delta(unet: torch.nn.Module, delta: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Add a fine-tune's weight delta to ``unet`` in place (every floating tensor of its state)."""
    state = unet.state_dict()
    if set(delta) != {k for k, v in state.items() if v.is_floating_point()}:
        raise ValueError("the delta does not match the base UNet's tensors: it was made over another model")
    with torch.no_grad():
        for key, value in delta.items():
            state[key].add_(value.to(state[key]))
    return unet


def _tiny_only(name: str, profile: str | None, why: str) -> registry.ZooEntry:
    """The registry entry of ``name``, a model that exists only under ``tiny``; any other profile
    raises ``ValueError("zoo model <name> <why>")``."""
    profile = config.get_profile() if profile is None else profile
    if profile != "tiny":
        raise ValueError(f"zoo model {name!r} {why}")
    return registry.entry(name)


def load_pixel_ddpm_delta(name: str, profile: str | None = None, device: str | torch.device | None = None,
                          weights_dir: Path = registry.WEIGHTS_DIR,
                          manifest_path: Path = registry.MANIFEST_PATH) -> PixelDDPM:
    """A fine-tuned pixel DDPM shipped as an fp16 delta over its base (``ZooEntry.base``): the base,
    plus the delta, in fp32 and eval mode. Tiny profile only: a ``full`` fine-tune is made live on a
    GPU with :func:`fashionlab.methods.diffusionclip.finetune` (chapter 07), not shipped."""
    entry = _tiny_only(name, profile, f"is a tiny-profile fine-tune of {registry.entry(name).base!r}; under the 'full' "
                       "profile fine-tune the full base yourself with fashionlab.methods.diffusionclip.finetune (chapter 07)")
    base = load_pixel_ddpm(entry.base, "tiny", "cpu", weights_dir=weights_dir, manifest_path=manifest_path)
    delta, _ = registry.load_tiny_state(name, weights_dir, manifest_path)
    unet = apply_delta(base.unet, delta).to(config.get_device(device)).eval()
    return PixelDDPM(unet, base.scheduler, name, "tiny", str(registry.tiny_files(name, weights_dir)[0]))


@dataclass
class HSpaceEdit:
    """A shipped h-space editor (chapter 10): the base DDPM split at h-space, the delta-h module (ZIP's
    attribute encoder with its reference, or Asyrp's DeltaBlock), its edit and its settings."""

    model: "zip_method.HSpaceDenoiser"
    delta: torch.nn.Module
    method: str
    edit: "zip_method.ZIPEdit"
    config: "zip_method.ZIPConfig"
    ddpm: PixelDDPM
    name: str

    def __call__(self, images: torch.Tensor, **kwargs) -> torch.Tensor:
        """Edit ``images`` with the shipped settings (``zip.edit``; ``kwargs`` go to it)."""
        return zip_method.edit(self.model, images, self.delta, kwargs.pop("cfg", self.config), **kwargs)


def load_zip_delta(name: str, profile: str | None = None, device: str | torch.device | None = None,
                   weights_dir: Path = registry.WEIGHTS_DIR, manifest_path: Path = registry.MANIFEST_PATH) -> HSpaceEdit:
    """A shipped ZIP attribute encoder or Asyrp DeltaBlock over its base DDPM. Tiny profile only."""
    entry = _tiny_only(name, profile, f"is trained on the tiny {registry.entry(name).base!r}; under the 'full' profile "
                       "train one on the full base with fashionlab.methods.zip.train (chapter 10)")
    base = load_pixel_ddpm(entry.base, "tiny", "cpu", weights_dir=weights_dir, manifest_path=manifest_path)
    state, cfg = registry.load_tiny_state(name, weights_dir, manifest_path)
    settings = dict(cfg["config"])
    settings["window"] = tuple(settings["window"])
    zip_config = zip_method.ZIPConfig(**settings)
    if cfg["method"] == "zip":
        delta = zip_method.ZIPDelta(zip_method.AttributeEncoder(base.unet), state["reference"].float(),
                                    base.scheduler.alphas_cumprod, reference_t=zip_config.reference_t)
    else:
        delta = zip_method.DeltaBlock.for_unet(base.unet)
    delta.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    device = config.get_device(device)
    base.unet.to(device)
    model = zip_method.HSpaceDenoiser(base.unet, base.scheduler)
    return HSpaceEdit(model, delta.to(device).eval().requires_grad_(False), cfg["method"],
                      zip_method.ZIP_EDITS[cfg["edit"]], zip_config, base, name)


def _load_zip_delta(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path):
    return load_zip_delta(name, profile, device, weights_dir, manifest_path)


def _load_pixel_ddpm(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path, **kwargs):
    return load_pixel_ddpm(name, profile, device, weights_dir=weights_dir, manifest_path=manifest_path, **kwargs)


def _load_clip(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path, **kwargs):
    return load_clip(name, profile, device, weights_dir=weights_dir, manifest_path=manifest_path, **kwargs)


def _load_supervised(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path):
    return load_evaluator(name, device, weights_dir, manifest_path)


def _load_delta(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path):
    return load_pixel_ddpm_delta(name, profile, device, weights_dir, manifest_path)


def load_vae(name: str = "garments-vae", profile: str | None = None, device: str | torch.device | None = None,
             source: str | Path | None = None, weights_dir: Path = registry.WEIGHTS_DIR,
             manifest_path: Path = registry.MANIFEST_PATH):
    """A diffusers ``AutoencoderKL`` in fp32 and eval mode, its ``config.scaling_factor`` set.
    ``tiny``: our shipped weights. ``full``: the ``vae`` subfolder of the registry's Stable Diffusion
    repository, or of ``source`` (a local folder in that layout)."""
    from diffusers import AutoencoderKL

    entry, profile = _entry_and_profile(name, "vae", profile)
    if profile == "tiny":
        state, cfg = registry.load_tiny_state(name, weights_dir, manifest_path)
        vae = AutoencoderKL(**cfg["vae"])
        vae.load_state_dict(state, strict=True)
    else:
        where = _full_source(name, source, entry.full_hub_id)
        vae = AutoencoderKL.from_pretrained(where, subfolder=entry.full_subfolders[0], torch_dtype=torch.float32)
    return vae.to(config.get_device(device)).eval()


def _clip_source(model_name: str, tag: str) -> tuple[str | None, bool]:
    """(url of the host open_clip downloads ``tag``'s weights from, whether they are cached)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    if cfg.get("hf_hub"):
        repo = cfg["hf_hub"].strip("/")
        return None, any(config.hf_cached(repo, f) for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    url = cfg.get("url") or None  # open_clip caches these under ~/.cache/clip by file name
    return url, url is not None and (Path.home() / ".cache" / "clip" / url.rsplit("/", 1)[-1]).is_file()


def _full_source(name: str, source: str | Path | None, hub_id: str) -> str:
    """Where a ``full`` model comes from: a local ``source`` folder (which must exist) or the hub
    (which must be reachable: offline this fails at once)."""
    if source is not None:
        if not Path(source).is_dir():
            raise FileNotFoundError(f"source folder {source} does not exist")
        return str(source)
    cached = any(config.hf_cached(hub_id, f) for f in ("model_index.json", "config.json"))
    config.require_hub(f"Loading {name!r} under the 'full' profile ({hub_id})", cached=cached)
    return hub_id


def _load_vae(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path, **kwargs):
    return load_vae(name, profile, device, weights_dir=weights_dir, manifest_path=manifest_path, **kwargs)


SD_TOKENIZER_DIR = "tokenizers"
"""Under :func:`fashionlab.config.cache_dir`: the tokenizer files written for tiny pipelines."""


def sd_sampler(schedule: dict):
    """The DDIM sampler of a training schedule (``DDPMScheduler`` keywords), set up as Stable
    Diffusion 1.x sets up its samplers: ``set_alpha_to_one=False``, ``steps_offset=1``."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**schedule, set_alpha_to_one=False, steps_offset=1)


def load_sd(name: str = "garments-sd-base", profile: str | None = None, device: str | torch.device | None = None,
            source: str | Path | None = None, hub_id: str | None = None, weights_dir: Path = registry.WEIGHTS_DIR,
            manifest_path: Path = registry.MANIFEST_PATH):
    """A diffusers ``StableDiffusionPipeline`` in fp32 (no safety checker), with a DDIM scheduler
    made from the training schedule, progress bars off.

    ``tiny``: the shipped UNet, the zoo VAE (``ZooEntry.base``) and the text tower of the CLIP the
    UNet was trained with, converted to a ``CLIPTextModel`` with an offline ``CLIPTokenizer``.
    ``full``: Stable Diffusion from the hub (``hub_id`` or the registry's 1.4) or from ``source``, a
    local folder in the same layout (``save_pretrained`` writes one)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    entry, profile = _entry_and_profile(name, "sd-pipeline", profile)
    device = config.get_device(device)
    if profile == "tiny":
        state, cfg = registry.load_tiny_state(name, weights_dir, manifest_path)
        unet = UNet2DConditionModel(**cfg["unet"])
        unet.load_state_dict(state, strict=True)
        clip = load_clip(cfg["text"], "tiny", "cpu", weights_dir=weights_dir, manifest_path=manifest_path)
        pipe = StableDiffusionPipeline(
            vae=load_vae(entry.base, "tiny", "cpu", weights_dir=weights_dir, manifest_path=manifest_path),
            text_encoder=text_encoder_from_clip(clip.model),
            tokenizer=clip_tokenizer(config.cache_dir() / SD_TOKENIZER_DIR / cfg["text"],
                                     clip.model.positional_embedding.shape[0]),
            unet=unet.eval(), scheduler=sd_sampler(cfg["scheduler"]), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
    else:
        where = _full_source(name, source, hub_id or entry.full_hub_id)
        pipe = StableDiffusionPipeline.from_pretrained(where, dtype=torch.float32, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_sd(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path, **kwargs):
    return load_sd(name, profile, device, weights_dir=weights_dir, manifest_path=manifest_path, **kwargs)


def load_sd_lora(name: str = "garments-sd-lora-catalog", profile: str | None = None,
                 device: str | torch.device | None = None, weights_dir: Path = registry.WEIGHTS_DIR,
                 manifest_path: Path = registry.MANIFEST_PATH):
    """A shipped LoRA adapter on its base pipeline (``ZooEntry.base``): the pipeline of
    :func:`load_sd` with the adapter loaded by diffusers' ``load_lora_weights`` (rank and alpha from
    the file's metadata) under the adapter name ``name``, active. ``pipe.disable_lora()`` gives the
    base model back, ``pipe.enable_lora()`` the adapter again. Tiny profile only: an adapter is
    trained for one base model, and Stable Diffusion's is trained live with
    :func:`fashionlab.methods.lora.train_lora` (chapter 08)."""
    entry, profile = _entry_and_profile(name, "sd-lora", profile)
    if profile != "tiny":
        raise ValueError(f"zoo model {name!r} is a LoRA adapter of the tiny {entry.base!r}; under the 'full' profile "
                         "train one on Stable Diffusion with fashionlab.methods.lora.train_lora (chapter 08) and load "
                         "it with pipe.load_lora_weights(folder)")
    weights = registry.verify_file(name, weights_dir, manifest_path)
    pipe = load_sd(entry.base, "tiny", "cpu", weights_dir=weights_dir, manifest_path=manifest_path)
    pipe.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=name)
    pipe.set_adapters([name])
    return pipe.to(config.get_device(device))


def _load_sd_lora(name: str, profile: str | None, device, weights_dir: Path, manifest_path: Path):
    return load_sd_lora(name, profile, device, weights_dir=weights_dir, manifest_path=manifest_path)


LOADERS: dict[str, Callable] = {"sd-pipeline": _load_sd, "sd-lora": _load_sd_lora, "pixel-ddpm": _load_pixel_ddpm,
                                "clip": _load_clip, "pixel-ddpm-delta": _load_delta, "vae": _load_vae,
                                "zip-delta": _load_zip_delta,
                                **{kind: _load_supervised for kind in SUPERVISED_BUILDERS}}
"""One loader per zoo kind: ``loader(name, profile, device, weights_dir, manifest_path, **kwargs)``."""


def load(name: str, profile: str | None = None, device: str | torch.device | None = None,
         weights_dir: Path | None = None, manifest_path: Path | None = None, **kwargs):
    """Load zoo model ``name`` under ``profile`` (default: the active one) on ``device``, in fp32 and
    eval mode; what comes back depends on its kind (module table). ``kwargs`` go to the kind's
    loader (``source=``/``hub_id=`` for a pixel DDPM, ``pretrained=`` for a CLIP)."""
    entry = registry.entry(name)
    if profile is not None and profile not in config.PROFILES:
        raise ValueError(f"profile must be one of {config.PROFILES}, got {profile!r}")
    return LOADERS[entry.kind](name, profile, device, weights_dir or registry.WEIGHTS_DIR,
                               manifest_path or registry.MANIFEST_PATH, **kwargs)


def build_attrnet(init: str, clip_name: str = "garments-clip-s", seed: int = 0, heads: int = 4) -> AttributeNet:
    """An AttributeNet on a fresh copy of the ``init`` backbone (one of
    :data:`~fashionlab.train.attrnet.INITS`); the pooler and heads are initialised from ``seed``.
    ``clip`` and ``supervised`` load shipped zoo weights. The caller's global RNG is left as it was."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "random":
        with config.seeded(seed + 1000):  # the backbone's own random draw, apart from the pooler's
            visual = create_clip(clip_name).model.visual
    else:
        with config.seeded(0):  # loading builds (then overwrites) a random init: keep it off the global RNG
            if init == "clip":
                visual = copy.deepcopy(load_clip(clip_name, profile="tiny", device="cpu").model.visual)
            else:
                visual = copy.deepcopy(load_evaluator(supervised_name(clip_name), device="cpu").visual)
    with config.seeded(seed):
        return AttributeNet(visual.train(), heads=heads, backbone_init=init)


def supervised_name(clip_name: str) -> str:
    """The zoo name of the supervised backbone that matches ``clip_name`` (``garments-clip-s`` ->
    ``garments-vit-sup-s``)."""
    return "garments-vit-sup-" + clip_name.rsplit("-", 1)[-1]


def verify_all(weights_dir: Path | None = None, manifest_path: Path | None = None) -> dict[str, str]:
    """Hash and load every shipped tiny model; returns {name: "ok" | error message}. A missing or
    empty manifest is an error (``FileNotFoundError``), not an empty success: it means the package's
    data files did not install."""
    weights_dir = weights_dir or registry.WEIGHTS_DIR
    manifest_path = manifest_path or registry.MANIFEST_PATH
    if not manifest_path.is_file():
        raise FileNotFoundError(f"the zoo manifest {manifest_path} is missing, so no shipped model can be "
                                "checked; reinstall fashionlab (its package data holds the manifest)")
    models = registry.read_manifest(manifest_path)["models"]
    if not models:
        raise FileNotFoundError(f"the zoo manifest {manifest_path} lists no models")
    results = {}
    for name in models:
        try:
            load(name, profile="tiny", device="cpu", weights_dir=weights_dir, manifest_path=manifest_path)
            results[name] = "ok"
        except (FileNotFoundError, ValueError) as err:
            results[name] = f"FAILED: {err}"
    return results
