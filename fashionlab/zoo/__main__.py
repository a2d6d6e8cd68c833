"""Command line of the model zoo: ``python -m fashionlab.zoo {train,export,verify,list}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import loaders, recipes, registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionlab.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or resume) a recipe")
    train.add_argument("name", choices=sorted(recipes.RECIPES))
    train.add_argument("--resume", action="store_true", help="continue from training/<name>/checkpoint.pt")
    train.add_argument("--minutes", type=float, default=None, help="stop after this much wall-clock time")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    train.add_argument("--workdir", type=Path, default=None, help="checkpoint folder (default: training/<name>)")
    export = sub.add_parser("export", help="evaluate a trained recipe and ship its weights (fp16) to the zoo")
    export.add_argument("name", choices=sorted(recipes.RECIPES))
    sub.add_parser("verify", help="hash and load every shipped model")
    sub.add_parser("list", help="list the zoo models and recipes")
    args = parser.parse_args(argv)
    if args.command == "train":
        try:
            recipes.check_run_flags(args.name, args.minutes, args.max_steps, args.resume)
        except ValueError as err:  # flags a short recipe cannot honour, or a bad number
            print(f"error: {err}", file=sys.stderr)
            return 2
        steps, minutes, finished = recipes.run_recipe(args.name, minutes=args.minutes, max_steps=args.max_steps,
                                                      resume=args.resume, workdir=args.workdir)
        print(f"{args.name}: step {steps}, {minutes:.1f} min in all, finished={finished}")
        return 0
    if args.command == "export":
        entry = recipes.export(args.name)
        print(json.dumps(entry, indent=2, sort_keys=True))
        return 0
    if args.command == "verify":
        try:
            results = loaders.verify_all()
        except FileNotFoundError as err:
            print(f"verify failed: {err}", file=sys.stderr)
            return 1
        for name, status in results.items():
            print(f"{name}: {status}")
        return 1 if any(s != "ok" for s in results.values()) else 0
    for row in registry.list_models():
        print(f"{row['name']} ({row['kind']}): tiny weights {'shipped' if row['tiny'] else 'not yet shipped'}; "
              f"full = {row['full'] or 'the same shipped weights'}")
    for name, recipe in recipes.RECIPES.items():
        print(f"recipe {name}: {recipe.notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
