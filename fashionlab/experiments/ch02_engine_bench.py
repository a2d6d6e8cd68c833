"""Side-by-side benchmarks of our engine against diffusers, on the same UNet and inputs.

    python -m fashionlab.experiments.ch02_engine_bench engine [--batch 8] [--steps 50] [--repeats 3]

Chapter: "Diffusion in one notebook". Prints, for DDIM sampling (ours vs ``DDIMPipeline``) and
DDIM inversion (ours vs ``DDIMInverseScheduler``), the median wall-clock time ratio and the
reconstruction / agreement errors. Runs interleave the two implementations so that a busy
machine slows both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ..data.garments import render_batch, spec_for
from ..diffusion import core, inversion
from ..metrics import psnr
from ..zoo import loaders, recipes


def _model(random_weights: bool = False):
    """(unet, its noise-schedule config, description): the shipped garments-ddpm-64, or, only when
    ``random_weights`` is asked for, the same architecture with random weights (seed 0). A missing
    shipped model is an error, not a silent switch: timings on random weights are not the book's."""
    if random_weights:
        recipe = recipes.get_recipe("garments-ddpm-64")
        unet = recipes.build_unet(recipe, seed=0).eval()
        return unet, dict(recipe.scheduler), "garments-ddpm-64 architecture, random weights (asked for)"
    try:
        model = loaders.load("garments-ddpm-64", profile="tiny", device="cpu")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}\nTo benchmark the architecture with random weights instead, pass "
                                "--random-weights (engine(random_weights=True)).") from err
    return model.unet, dict(model.scheduler.config), "garments-ddpm-64 (shipped weights)"


def engine(batch: int = 8, steps: int = 50, repeats: int = 3, random_weights: bool = False) -> dict:
    from diffusers import DDIMInverseScheduler, DDIMPipeline, DDIMScheduler


    unet, schedule, what = _model(random_weights)
    size = int(unet.config.sample_size)
    # The model's own schedule and prediction type; no clipping, final alpha_bar 1, no offset.
    schedule = {k: v for k, v in schedule.items() if k in core.SCHEDULE_KEYS}
    options = dict(clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    scheduler = DDIMScheduler(**schedule, **options)
    inverse = DDIMInverseScheduler(**schedule, **options)
    pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    denoiser = core.PixelDenoiser(unet, scheduler)
    alphas_cumprod = scheduler.alphas_cumprod
    grid = core.diffusers_grid(scheduler, steps)

    # --- DDIM sampling ---------------------------------------------------------------------
    def ours_sample():
        x_T = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        return core.sample(denoiser, x_T, grid, alphas_cumprod, eta=0.0).x0

    def diffusers_sample():
        out = pipe(batch_size=batch, generator=torch.Generator().manual_seed(0), num_inference_steps=steps, eta=0.0,
                   output_type="np", use_clipped_model_output=False)
        return torch.from_numpy(out.images).permute(0, 3, 1, 2) * 2 - 1

    # --- DDIM inversion ----------------------------------------------------------------------
    x0 = render_batch([spec_for(1, i, "in") for i in range(batch)], size)

    def ours_invert():
        return inversion.ddim_invert(denoiser, x0, grid, alphas_cumprod, eps_at="higher").x_t

    def diffusers_invert():
        inverse.set_timesteps(steps)
        x = x0
        with torch.no_grad():
            for t in inverse.timesteps:
                model_output = unet(x, t).sample  # eps or v: the scheduler knows which
                x = inverse.step(model_output, t, x).prev_sample
        return x

    timings = {"ours_sample": [], "diffusers_sample": [], "ours_invert": [], "diffusers_invert": []}
    results = {}
    with torch.no_grad():
        for _ in range(repeats):
            for name, fn in (("ours_sample", ours_sample), ("diffusers_sample", diffusers_sample),
                             ("ours_invert", ours_invert), ("diffusers_invert", diffusers_invert)):
                start = time.perf_counter()
                results[name] = fn()
                timings[name].append(time.perf_counter() - start)
        # Reconstruction: invert, then generate back with our sampler (both inversions).
        rec_ours = core.sample(denoiser, results["ours_invert"], grid, alphas_cumprod).x0
        rec_diff = core.sample(denoiser, results["diffusers_invert"], grid, alphas_cumprod).x0
        rec_lower = core.sample(denoiser, inversion.ddim_invert(denoiser, x0, grid, alphas_cumprod, eps_at="lower").x_t,
                                grid, alphas_cumprod).x0
    med = {k: statistics.median(v) for k, v in timings.items()}
    return {
        "model": what,
        "batch": batch,
        "steps": steps,
        "sample_time_ours_s": med["ours_sample"],
        "sample_time_diffusers_s": med["diffusers_sample"],
        "sample_time_ratio": med["ours_sample"] / med["diffusers_sample"],
        "sample_max_abs_diff": float((results["ours_sample"].clamp(-1, 1) - results["diffusers_sample"]).abs().max()),
        "invert_time_ours_s": med["ours_invert"],
        "invert_time_diffusers_s": med["diffusers_invert"],
        "invert_time_ratio": med["ours_invert"] / med["diffusers_invert"],
        "invert_latent_max_abs_diff": float((results["ours_invert"] - results["diffusers_invert"]).abs().max()),
        "roundtrip_psnr_ours_db": float(psnr(rec_ours.clamp(-1, 1), x0).mean()),
        "roundtrip_psnr_diffusers_db": float(psnr(rec_diff.clamp(-1, 1), x0).mean()),
        "roundtrip_psnr_ours_eps_at_lower_db": float(psnr(rec_lower.clamp(-1, 1), x0).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionlab.experiments.ch02_engine_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    eng = sub.add_parser("engine", help="our DDIM sampling and inversion vs diffusers'")
    eng.add_argument("--batch", type=int, default=8)
    eng.add_argument("--steps", type=int, default=50)
    eng.add_argument("--repeats", type=int, default=3)
    eng.add_argument("--random-weights", action="store_true",
                     help="benchmark the architecture with random weights (default: the shipped model, or an error)")
    args = parser.parse_args(argv)
    report = engine(args.batch, args.steps, args.repeats, args.random_weights)
    print(f"model: {report.pop('model')}")
    for key, value in report.items():
        print(f"{key:38s} {value:.4g}" if isinstance(value, float) else f"{key:38s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
