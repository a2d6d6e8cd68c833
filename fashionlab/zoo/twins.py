"""Random-weight twins of the ``full`` profile's hub checkpoints, saved in their exact file layouts.

Chapter: "Setup" (``book/setup.md``). Nothing real can be downloaded on the machines that test this
book, so every ``full`` loader is tested offline against a twin: a model of the same class, with
random weights and small sizes, written to disk in the file layout of the hub repository the
loader reads. ``python -m fashionlab.smoke --twins DIR`` runs every chapter's ``full`` path on them.

=====================  ===================================================  =========================
twin                   hub repository it stands in for                      layout written
=====================  ===================================================  =========================
:func:`ddpm_twin`      ``google/ddpm-celebahq-256`` (chapters 02, 07)        flat: ``config.json``,
                                                                            ``diffusion_pytorch_model.bin``,
                                                                            ``scheduler_config.json``
:func:`clip_twin`      open_clip's ``ViT-B-16-quickgelu`` / ``openai`` and   one safetensors file of
                       ``ViT-B-32`` / ``laion2b_s34b_b79k`` (03, 05, 07)     the full architecture
:func:`sd_twin`        ``CompVis/stable-diffusion-v1-4`` (chapter 08)       ``model_index.json``,
                                                                            ``unet/``, ``vae/``,
                                                                            ``text_encoder/``,
                                                                            ``tokenizer/``,
                                                                            ``scheduler/``,
                                                                            ``feature_extractor/``
:func:`catalog_twin`   ``ashraq/fashion-product-images-small`` (01, 03,     ``data/train-*.parquet``
                       05, 08)                                              with the real columns
=====================  ===================================================  =========================

The CLIP twins have the real architectures (150M and 88M parameters, saved in fp16) because the
loader builds those; the others are small, since their loaders read the size from the config.
The Stable Diffusion twin leaves out ``safety_checker/``: :func:`~fashionlab.zoo.loaders.load_sd`
passes ``safety_checker=None``, so diffusers neither downloads nor reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import config
from ..models.clip import FULL_MODELS

SD14_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.2.2",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
"""``model_index.json`` of ``CompVis/stable-diffusion-v1-4``: which class each subfolder holds."""

SD14_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
"""``scheduler/scheduler_config.json`` of Stable Diffusion 1.4 (a PNDM sampler)."""


def _fresh(folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ddpm_twin(folder: str | Path, sample_size: int = 16, seed: int = 0) -> Path:
    """A random pixel ``UNet2DModel`` and its ``DDPMScheduler`` in ``google/ddpm-celebahq-256``'s flat
    layout (weights as ``diffusion_pytorch_model.bin``, as in that repository)."""
    from diffusers import DDPMScheduler, UNet2DModel

    folder = _fresh(folder)
    with config.seeded(seed):
        unet = UNet2DModel(sample_size=sample_size, in_channels=3, out_channels=3, layers_per_block=1,
                           block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8)
    unet.save_pretrained(folder, safe_serialization=False)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(folder)
    return folder


def clip_twin(path: str | Path, name: str = "garments-clip-s", seed: int = 0) -> Path:
    """Random weights of zoo CLIP ``name``'s ``full`` architecture (:data:`FULL_MODELS`), saved as
    one fp16 safetensors file: what ``load_clip(name, "full", pretrained=path)`` reads."""
    from safetensors.torch import save_file

    from ..models.clip import create_clip

    if name not in FULL_MODELS:
        raise ValueError(f"name must be one of {sorted(FULL_MODELS)}, got {name!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with config.seeded(seed):
        model = create_clip(FULL_MODELS[name][0]).model
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def sd_twin(folder: str | Path, seed: int = 0) -> Path:
    """A random Stable Diffusion 1.x pipeline in ``CompVis/stable-diffusion-v1-4``'s layout: 8 x 8 x 4
    latents (32 px), a 2-layer QuickGELU ``CLIPTextModel`` with the real 49,408-token vocabulary and 77
    positions, the real tokenizer files (from open_clip's BPE, which is OpenAI's), the real scheduler
    config and model index."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    from ..models.sd import clip_tokenizer

    folder = _fresh(folder)
    with config.seeded(seed):
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                            hidden_act="quick_gelu", projection_dim=32))
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32), cross_attention_dim=32, attention_head_dim=8,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                            block_out_channels=(8, 8, 8), norm_num_groups=4, scaling_factor=0.18215)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    clip_tokenizer(folder / "tokenizer", 77).save_pretrained(folder / "tokenizer")  # vocab, merges, configs
    PNDMScheduler(**SD14_SCHEDULER).save_pretrained(folder / "scheduler")
    CLIPImageProcessor(crop_size=224, size=224).save_pretrained(folder / "feature_extractor")
    (folder / "model_index.json").write_text(json.dumps(SD14_MODEL_INDEX, indent=2) + "\n")
    return folder


def catalog_twin(folder: str | Path, n: int = 64, seed: int = 0, size: int = 64) -> Path:
    """``n`` Garments catalogue rows in ``ashraq/fashion-product-images-small``'s parquet layout
    (:func:`~fashionlab.data.catalog.write_hub_layout`)."""
    from ..data.catalog import write_hub_layout

    write_hub_layout(folder, n, seed=seed, size=size)
    return Path(folder)


def write_all(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Every twin under ``folder``: {role: path}, the roles :mod:`fashionlab.smoke` takes."""
    folder = _fresh(folder)
    return {"ddpm": ddpm_twin(folder / "ddpm-celebahq-256", seed=seed),
            "clip-s": clip_twin(folder / "clip-s.safetensors", "garments-clip-s", seed),
            "clip-b": clip_twin(folder / "clip-b.safetensors", "garments-clip-b", seed),
            "sd": sd_twin(folder / "stable-diffusion-v1-4", seed),
            "catalog": catalog_twin(folder / "fashion-product-images-small", seed=seed)}



def ensure_all(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """:func:`write_all` once: a folder that already holds a complete set (``twins.json``, written
    last) is reused as it is."""
    folder = Path(folder)
    index = folder / "twins.json"
    if index.is_file():
        paths = {role: folder / rel for role, rel in json.loads(index.read_text()).items()}
        if all(p.exists() for p in paths.values()):
            return paths
    paths = write_all(folder, seed)
    index.write_text(json.dumps({role: str(p.relative_to(folder)) for role, p in paths.items()}, indent=2) + "\n")
    return paths
