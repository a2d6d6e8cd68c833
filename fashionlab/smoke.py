"""Every chapter's ``full`` path in a few steps: ``python -m fashionlab.smoke --profile full``.

Chapter: "Setup" (``book/setup.md``). For anyone with a GPU and the network (a Colab GPU runtime):
it loads each real checkpoint a chapter uses under ``full`` and runs that chapter's method for a
step or two, then prints one line per chapter -- ``ok`` with what it measured, ``tiny only`` where
the chapter refuses ``full`` as documented, or ``FAILED`` with the error -- and exits non-zero if
any chapter failed. It is never part of ``make test``: the real checkpoints are gigabytes.

``--twins DIR`` runs the same code offline on random-weight twins saved in the hub layouts
(:mod:`fashionlab.zoo.twins`, written to ``DIR`` on first use); that is how our CI tests it. The
numbers it prints then mean nothing: only that every piece fits.

=======  ===============================================================================
chapter  what runs under ``full``
=======  ===============================================================================
01       the real catalogue (``ashraq/fashion-product-images-small``): a few rows
02       ``google/ddpm-celebahq-256``: a DDIM sample in ``--steps`` steps
03       guide (``ViT-B-16-quickgelu``, OpenAI) and judge (``ViT-B-32``, LAION-2B): zero-shot
         article type on catalogue photos
05       the ``garments-attrnet`` recipe on the ViT-B-16 tower and catalogue labels, one step
07       DiffusionCLIP "face" -> "angry face" on the face DDPM, one fine-tuning step
08       Stable Diffusion 1.4: one image, then one LoRA step on catalogue captions
04, 06,  refused as the chapters document (``book/setup.md``): the check is that they refuse
09, 10   cleanly
=======  ===============================================================================
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import config

ROLES: tuple[str, ...] = ("ddpm", "clip-s", "clip-b", "sd", "catalog")
"""Where each ``full`` checkpoint comes from: a local copy (a twin, or a pre-downloaded one), else the hub."""


@dataclass(frozen=True)
class Sources:
    """A local path per role (None: the hub)."""

    ddpm: Path | None = None
    clip_s: Path | None = None
    clip_b: Path | None = None
    sd: Path | None = None
    catalog: Path | None = None

    @classmethod
    def from_roles(cls, paths: dict[str, Path]) -> "Sources":
        unknown = sorted(set(paths) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown roles {unknown}; the roles are {ROLES}")
        return cls(**{role.replace("-", "_"): Path(p) for role, p in paths.items()})


@dataclass(frozen=True)
class Check:
    chapter: str
    status: str
    """``ok``, ``tiny only`` or ``FAILED``."""
    seconds: float
    detail: str


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _pretrained(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _catalogue(src: Sources, rows: int):
    from .data.catalog import load_hub_catalog

    return load_hub_catalog(source=src.catalog, limit=rows)


def chapter_01(src: Sources, device: torch.device, steps: int) -> str:
    frame = _catalogue(src, 8)
    return f"{len(frame)} catalogue rows, first image {frame['image'][0].size[0]}x{frame['image'][0].size[1]} px"


def _ddim_sample(ddpm, steps: int, seed: int, device: torch.device) -> torch.Tensor:
    """One DDIM sample of a loaded pixel DDPM in ``steps`` steps from seeded noise."""
    from .diffusion import core

    size = ddpm.image_size
    x_t = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        return core.sample(core.PixelDenoiser(ddpm.unet, ddpm.scheduler), x_t,
                           core.even_grid(len(ddpm.alphas_cumprod) - 1, steps), ddpm.alphas_cumprod).x0


def chapter_02(src: Sources, device: torch.device, steps: int) -> str:
    from .zoo import loaders

    ddpm = loaders.load("garments-ddpm-64", "full", device, source=src.ddpm)
    x0 = _ddim_sample(ddpm, steps, 0, device)
    size = ddpm.image_size
    return f"{ddpm.source}: a {size}x{size} sample in {_count(steps, 'DDIM step')}, pixel std {float(x0.std()):.3f}"


def chapter_03(src: Sources, device: torch.device, steps: int) -> str:
    from .data.catalog import singular, square_images
    from .data.transforms import to_model_input
    from .models.clip import encode_text
    from .zoo import loaders

    frame = _catalogue(src, 16)
    types = sorted(set(frame["articleType"]))
    truth = torch.tensor([types.index(t) for t in frame["articleType"]])
    out = []
    for name, path in (("garments-clip-s", src.clip_s), ("garments-clip-b", src.clip_b)):
        bundle = loaders.load_clip(name, "full", device, pretrained=_pretrained(path))
        images = to_model_input(square_images(frame, bundle.image_size))
        with torch.no_grad():
            image_f = torch.nn.functional.normalize(bundle.model.encode_image(bundle.pixels(images.to(device))), dim=-1)
            text_f = encode_text(bundle, [f"a photo of a {singular(t).lower()}" for t in types])
        accuracy = float(((image_f @ text_f.T).argmax(1).cpu() == truth).float().mean())
        out.append(f"{bundle.name} zero-shot article type {accuracy:.2f}")
    return f"{len(frame)} photos, {len(types)} types: " + "; ".join(out)


def chapter_05(src: Sources, device: torch.device, steps: int) -> str:
    from .experiments.ch05_attrnet_full import run_full
    from .train.attrnet import AttrNetTrainConfig

    cfg = AttrNetTrainConfig(steps=steps, batch_size=4, warmup_steps=1, bf16=device.type == "cuda")
    _, result = run_full(24, 8, cfg, src.catalog, _pretrained(src.clip_s), min_count=2, device=device,
                         progress=False)
    return (f"{result['trainable_parameters'] / 1e6:.1f}M trainable, {_count(result['config']['steps'], 'step')}, "
            f"loss {result['losses'][-1]:.3f}, held-out mean accuracy {result['mean_accuracy']:.2f}")


def chapter_07(src: Sources, device: torch.device, steps: int) -> str:
    from .methods import diffusionclip
    from .zoo import loaders

    ddpm = loaders.load("garments-ddpm-64", "full", device, source=src.ddpm)
    bundle = loaders.load_clip("garments-clip-s", "full", device, pretrained=_pretrained(src.clip_s))
    face = _ddim_sample(ddpm, steps, 1, device).clamp(-1, 1)
    chain = max(steps, 2)  # DiffusionCLIP's inversion and generation need at least two steps
    cfg = diffusionclip.DiffusionCLIPConfig(depth=300, inv_steps=chain, gen_steps=chain, test_gen_steps=chain,
                                            batch_size=1, learning_rate=4e-6)
    result = diffusionclip.finetune(ddpm.unet, ddpm.scheduler, bundle, face,
                                    [diffusionclip.TextPair("face", "angry face")], cfg)
    return f"one fine-tuning step on a sampled face, loss {result.losses[0]:.3f}"


def chapter_08(src: Sources, device: torch.device, steps: int) -> str:
    from .data.catalog import caption_from_row, square_images
    from .data.transforms import to_model_input
    from .methods import lora
    from .methods.text_to_image import generate
    from .zoo import loaders

    pipe = loaders.load_sd("garments-sd-base", "full", device, source=src.sd)
    image = generate(pipe, ["an image of a 2012 Casual Summer Blue Men's Tshirt"], steps=steps)
    frame = _catalogue(src, 6)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = to_model_input(square_images(frame, size))
    data = lora.encode_split(pipe, images, [caption_from_row(row) for _, row in frame.iterrows()])
    with tempfile.TemporaryDirectory() as tmp:
        # What fits a 16 GB T4 at 512 px: batch 2, gradient checkpointing, fp16 autocast (bf16 where it exists)
        cfg = lora.LoRAConfig(epochs=1, batch_size=2, save_epochs=(1,), bf16=device.type == "cuda",
                              gradient_checkpointing=device.type == "cuda")
        run = lora.train_lora(pipe, data, cfg, tmp, progress=False)
        saved = sorted(p.name for p in run.saved[1].iterdir())
    return (f"a {image.shape[-1]} px image in {_count(steps, 'step')}; LoRA r4: {run.trainable_parameters / 1e6:.2f}M "
            f"parameters, {_count(run.steps, 'step')}, loss {run.losses[-1]:.3f}, saved {saved}")


def _refuses(load: Callable[[], object], pattern: str) -> str:
    try:
        load()
    except ValueError as error:
        if pattern not in str(error):
            raise
        return f"refused: {error}"
    raise AssertionError("the chapter did not refuse the 'full' profile")


def tiny_only_04(src: Sources, device: torch.device, steps: int) -> str:
    return "its scores need the renderer's ground truth (book/setup.md)"


def tiny_only_06(src: Sources, device: torch.device, steps: int) -> str:
    from .experiments.ch06_guided_edit import load_edit_models

    return _refuses(lambda: load_edit_models(device), "'tiny' profile only")


def tiny_only_09(src: Sources, device: torch.device, steps: int) -> str:
    from .experiments.ch09_gradient_guidance import load_models

    return _refuses(lambda: load_models(device), "'tiny' profile only")


def tiny_only_10(src: Sources, device: torch.device, steps: int) -> str:
    from .zoo import loaders

    return _refuses(lambda: loaders.load("garments-zip-striped", "full", device), "tiny")


CHECKS: dict[str, tuple[Callable[[Sources, torch.device, int], str], str]] = {
    "01": (chapter_01, "ok"), "02": (chapter_02, "ok"), "03": (chapter_03, "ok"), "04": (tiny_only_04, "tiny only"),
    "05": (chapter_05, "ok"), "06": (tiny_only_06, "tiny only"), "07": (chapter_07, "ok"), "08": (chapter_08, "ok"),
    "09": (tiny_only_09, "tiny only"), "10": (tiny_only_10, "tiny only"),
}
"""chapter -> (its check, the status it reports when it passes)."""

NOTEBOOK_FULL: tuple[str, ...] = ("01", "02", "03")
"""Chapters whose notebook honours ``PROFILE = "full"`` (the line in its first cell): 02 and 03 run
whole under ``full``, 01 adds its real-catalogue section. Every other notebook runs ``tiny``; where
:data:`CHECKS` reports ``ok``, that chapter's ``full`` path is a command or an exercise
(``book/setup.md``'s table, which a test keeps equal to these two tables)."""


def run(chapters: list[str] | None = None, sources: Sources = Sources(), steps: int = 2,
        device: str | torch.device | None = None, echo: Callable[[str], None] | None = print) -> list[Check]:
    """Run the checks of ``chapters`` (default: all) under the ``full`` profile and return one
    :class:`Check` each; ``echo`` prints each line as it finishes. The profile is restored after."""
    chapters = sorted(CHECKS) if chapters is None else chapters
    unknown = [c for c in chapters if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown chapters {unknown}; choose from {sorted(CHECKS)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    device = config.get_device(device)
    previous = config.get_profile()
    config.use_profile("full")
    results = []
    try:
        for chapter in chapters:
            check, status = CHECKS[chapter]
            start = time.perf_counter()
            try:
                detail = check(sources, device, steps)
            except Exception as error:  # a smoke test reports every chapter, then fails
                status, detail = "FAILED", f"{type(error).__name__}: {error}"
                traceback.print_exc(file=sys.stderr)
            results.append(Check(chapter, status, time.perf_counter() - start, detail))
            if echo is not None:
                echo(f"{chapter}  {status:<9}  {results[-1].seconds:6.1f} s  {detail}")
    finally:
        config.use_profile(previous)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionlab.smoke", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("full",), required=True,
                        help="the profile to smoke-test (only 'full': 'tiny' is what make test runs)")
    parser.add_argument("--chapters", default=None, help="comma-separated, e.g. 02,08 (default: all)")
    parser.add_argument("--steps", type=int, default=2, help="sampling / training steps per check (default 2)")
    parser.add_argument("--twins", type=Path, default=None,
                        help="run offline on random-weight twins in this folder (written on first use)")
    parser.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    chapters = None if args.chapters is None else [c.strip().zfill(2) for c in args.chapters.split(",") if c.strip()]
    unknown = [c for c in chapters or [] if c not in CHECKS]
    if unknown:
        parser.error(f"unknown chapters {unknown}; choose from {sorted(CHECKS)}")
    sources = Sources()
    if args.twins is not None:
        from .zoo import twins

        print(f"random-weight twins in {args.twins} (numbers below mean nothing)")
        sources = Sources.from_roles(twins.ensure_all(args.twins))
    results = run(chapters, sources, args.steps, args.device)
    failed = [r.chapter for r in results if r.status == "FAILED"]
    print(f"{len(results) - len(failed)} of {len(results)} chapters passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
