"""The book's command line: ``python -m fashionlab generate "PROMPT" [options]``.

Generates one garment image from a text prompt with the chapter 08 pipeline: the tiny
``garments-sd-base`` offline on the CPU (``--profile tiny``, the default), or Stable Diffusion 1.4
under ``--profile full`` (a GPU and the hub). ``--lora`` adds an adapter: a zoo adapter by name
(``garments-sd-lora-catalog``, chapter 08's catalog-caption LoRA; tiny profile), or one saved in
diffusers' LoRA format (a folder holding ``pytorch_lora_weights.safetensors``, or the file itself).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _number(text: str, low: float, high: float, integer: bool = False, note: str = "") -> float | int:
    """``text`` as a finite number (an int if ``integer``) in [low, high], else argparse's error."""
    import math

    kind = "an integer" if integer else "a finite number"
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {kind} in [{low:g}, {high:g}]{note}, got {text!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {kind} in [{low:g}, {high:g}]{note}, got {text!r}")
    return value


def _steps(text: str) -> int:
    return _number(text, 1, 1000, integer=True, note=" (the schedule has 1000 timesteps)")


def _seed(text: str) -> int:
    return _number(text, 0, 2**63 - 1, integer=True)


def _guidance(text: str) -> float:
    return _number(text, 1, 100, note=" (1 turns classifier-free guidance off)")


def _lora_scale(text: str) -> float:
    return _number(text, 0, 2, note=" (0 turns the adapter off, 1 is as trained)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fashionlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a garment image from a text prompt")
    gen.add_argument("prompt", help='the text prompt, e.g. "an image of a 2011 Casual Fall White Men\'s Sweater"')
    gen.add_argument("--lora", type=Path, default=None,
                     help="a LoRA adapter: a zoo name (garments-sd-lora-catalog) or a folder / .safetensors file")
    gen.add_argument("--lora-scale", type=_lora_scale, default=1.0, help="weight of the adapter, 0-2 (default 1)")
    gen.add_argument("--seed", type=_seed, default=0, help="seed of the initial latent (default 0)")
    gen.add_argument("--steps", type=_steps, default=25, help="DDIM steps, 1-1000 (default 25)")
    gen.add_argument("--guidance", type=_guidance, default=4.0, help="classifier-free guidance scale, 1-100 (default 4)")
    gen.add_argument("--profile", choices=("tiny", "full"), default=None,
                     help="tiny: the offline garments model (default: $FASHIONLAB_PROFILE or tiny); full: Stable Diffusion 1.4")
    gen.add_argument("--out", type=Path, default=Path("garment.png"), help="output PNG (default garment.png)")
    return parser


def generate_command(args: argparse.Namespace) -> int:
    from PIL import Image

    from . import zoo
    from .data.transforms import to_uint8
    from .methods.text_to_image import generate
    from .zoo import registry

    if not args.prompt.strip():
        print("error: the prompt is empty; say what to draw, e.g. \"a red striped t-shirt\"", file=sys.stderr)
        return 2
    zoo_adapters = sorted(n for n, e in registry.REGISTRY.items() if e.kind == "sd-lora")
    zoo_lora = args.lora is not None and not args.lora.exists() and str(args.lora) in zoo_adapters
    if args.lora is not None and not args.lora.exists() and not zoo_lora:
        print(f"error: --lora {args.lora} is neither a zoo adapter ({', '.join(zoo_adapters)}) nor an existing "
              "path (give the folder save_lora wrote, or its pytorch_lora_weights.safetensors)", file=sys.stderr)
        return 2
    if args.out.suffix.lower() != ".png":
        print(f"error: --out must name a .png file, got {args.out}", file=sys.stderr)
        return 2
    try:
        pipe = zoo.load(str(args.lora) if zoo_lora else "garments-sd-base", profile=args.profile)
    except (RuntimeError, ValueError) as err:  # full profile offline (require_hub), or a zoo adapter under full
        print(f"error: {err}", file=sys.stderr)
        return 1
    if zoo_lora:
        pipe.set_adapters([str(args.lora)], adapter_weights=[args.lora_scale])
    elif args.lora is not None:
        folder, name = (args.lora.parent, args.lora.name) if args.lora.is_file() else (args.lora, None)
        try:
            pipe.load_lora_weights(folder, weight_name=name, adapter_name="cli")
        except Exception as err:  # a corrupt or foreign file: safetensors, OSError or peft errors
            print(f"error: --lora {args.lora} could not be read as a diffusers LoRA adapter for this model "
                  f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'no detail'})",
                  file=sys.stderr)
            return 2
        pipe.set_adapters(["cli"], adapter_weights=[args.lora_scale])
    image = generate(pipe, args.prompt, seed=args.seed, steps=args.steps, guidance=args.guidance)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)[0]).save(args.out)
    print(f"wrote {args.out} ({image.shape[-1]} x {image.shape[-2]} px, seed {args.seed}, {args.steps} steps, "
          f"guidance {args.guidance}{', LoRA ' + str(args.lora) if args.lora else ''})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return generate_command(args)


if __name__ == "__main__":
    sys.exit(main())
