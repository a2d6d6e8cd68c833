"""Command line of the model zoo: ``python -m fashionlab.zoo {train,list}``."""

from __future__ import annotations

import argparse
import sys

from . import recipes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionlab.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or resume) a recipe")
    train.add_argument("name", choices=sorted(recipes.RECIPES))
    train.add_argument("--resume", action="store_true", help="continue from training/<name>/checkpoint.pt")
    train.add_argument("--minutes", type=float, default=None, help="stop after this much wall-clock time")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    sub.add_parser("list", help="list the recipes")
    args = parser.parse_args(argv)
    if args.command == "train":
        result = recipes.run_recipe(args.name, minutes=args.minutes, max_steps=args.max_steps, resume=args.resume)
        print(f"{args.name}: step {result.steps}, {result.minutes:.1f} min in all, "
              f"last logged loss {result.final_loss:.4f}, finished={result.finished}")
        return 0
    for name, recipe in recipes.RECIPES.items():
        print(f"{name}: {recipe.notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
