"""The package's one-way layers (``../shared/DESIGN.md``, "Layer rule"): each layer imports only
the layers before it, never a sibling or a later one. Parsed with ``ast``, so a function-local
import counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fashionlab"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("config",),
    ("data",),
    ("diffusion", "models"),
    ("losses", "metrics"),
    ("train",),
    ("methods",),
    ("eval",),
    ("zoo",),
    ("experiments",),
    ("viz",),
    ("widgets",),
    ("__main__", "smoke"),
)
"""config -> data -> diffusion | models -> losses | metrics -> train -> methods -> eval -> zoo ->
experiments -> viz -> widgets -> __main__ | smoke (the command lines). Units on one line are siblings:
neither imports the other."""
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """``fashionlab.zoo.loaders`` -> ``zoo``; None for a module outside the package."""
    parts = module.split(".")
    if parts[0] != "fashionlab":
        return None
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source``, relative ones resolved against ``module``."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:
                # ``from . import x`` / ``from .. import x``: the names are modules of that package
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """Every import of a later layer or of a sibling, as ``module:line imports target``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        unit = unit_of(module)
        if unit not in RANK:  # the package's __init__
            continue
        for line, target in imported_modules(path.read_text(), module, path.name == "__init__.py"):
            other = unit_of(target)
            if other is None or other == unit or other == "":
                continue
            if other not in RANK:
                out.append(f"{module}:{line} imports {target}, which is in no layer")
            elif RANK[other] >= RANK[unit]:
                out.append(f"{module}:{line} imports {target} ({other} is not below {unit})")
    return out


def test_every_unit_of_the_package_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert units <= set(RANK), f"units without a layer: {sorted(units - set(RANK))}"


def test_imports_only_go_down_the_layers():
    assert violations() == []


@pytest.mark.parametrize("source, expected", [
    ("from ..zoo import registry\n", ["fashionlab.models.bad:1 imports fashionlab.zoo (zoo is not below models)"]),
    ("def f():\n    from fashionlab.train.loop import fit\n",
     ["fashionlab.models.bad:2 imports fashionlab.train.loop (train is not below models)"]),
    ("from .. import losses\n", ["fashionlab.models.bad:1 imports fashionlab.losses (losses is not below models)"]),
    ("from ..diffusion import core\n", ["fashionlab.models.bad:1 imports fashionlab.diffusion "
                                        "(diffusion is not below models)"]),
    ("from ..data.garments import PARTS\nfrom .clip import create_clip\nimport torch\n", []),
])
def test_the_layer_check_catches_an_upward_import(tmp_path, source, expected):
    root = tmp_path / "fashionlab"
    (root / "models").mkdir(parents=True)
    for name in ("__init__.py", "models/__init__.py"):
        (root / name).write_text("")
    (root / "models" / "bad.py").write_text(source)
    assert violations(root) == expected
