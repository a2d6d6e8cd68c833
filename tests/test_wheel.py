"""The package as a reader installs it (Colab's ``pip install``): build the wheel, install it into a
fresh virtual environment, and run chapter 06's first cells from a folder outside the repository.
They load zoo weights and read the precomputed results, which must travel inside the wheel."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "fashionlab", source / "fashionlab", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(source)], check=True, cwd=out)
    (path,) = out.glob("fashionlab-*.whl")
    return path


def test_wheel_carries_the_weights_manifest_and_results(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "fashionlab/zoo/MANIFEST.json" in names
    for folder, pattern in (("fashionlab/zoo/weights", ".safetensors"), ("fashionlab/experiments/results", ".json")):
        shipped = {f"{folder}/{p.name}" for p in (ROOT / folder).iterdir() if p.name.endswith(pattern)}
        assert shipped and shipped <= names, sorted(shipped - names)
    assert not any(n.startswith(("tests/", "notebooks/", "training/")) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_chapter_06_first_cells_run_from_the_installed_wheel(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True)
    # The dependencies come from this environment, appended after the fresh one's own site-packages
    # (a path line in a .pth file is not itself scanned for .pth files, so the repository's editable
    # install stays out of sight).
    (_site_packages(python) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    notebook = jupytext.read(ROOT / "notebooks" / "06_guided_editing.py")
    cells = [c.source for c in notebook.cells if c.cell_type == "code"]
    last = next(i for i, source in enumerate(cells) if "RESULTS = {" in source)
    script = "\n\n".join(cells[:last + 1]) + """
import fashionlab
print("PACKAGE", fashionlab.__file__)
print("PARTS", sorted(RESULTS))
"""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "chapter06_head.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASHIONLAB_RESULTS")}
    env.update(FASHIONLAB_PROFILE="tiny", FASHIONLAB_CACHE=str(tmp_path / "cache"), MPLBACKEND="Agg")
    run = subprocess.run([str(python), "chapter06_head.py"], cwd=outside, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    package = Path(run.stdout.split("PACKAGE ")[1].splitlines()[0])
    assert venv in package.parents, package  # the wheel's copy, not the checkout
    assert "PARTS ['classifiers', 'confirm', 'main', 'sweep']" in run.stdout, run.stdout
