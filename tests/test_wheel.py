"""The package as a reader installs it (Colab's ``pip install``): build the wheel, install it into a
fresh virtual environment, and run chapter 06's first cells from a folder outside the repository.
They load zoo weights and read the precomputed results, which must travel inside the wheel."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
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
    from tests.colab_check import build_wheel

    return build_wheel(tmp_path_factory.mktemp("dist"))


PYPI_LIMIT_MB = 95
"""PyPI refuses files over 100 MB by default; we keep a margin."""


def test_wheel_carries_the_weights_manifest_and_results_and_fits_pypi(wheel):
    from fashionlab.zoo.registry import REPOSITORY_ONLY

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "fashionlab/zoo/MANIFEST.json" in names
    left_out = {f"fashionlab/zoo/weights/{name}.safetensors" for name in REPOSITORY_ONLY}
    for folder, pattern in (("fashionlab/zoo/weights", ".safetensors"), ("fashionlab/experiments/results", ".json")):
        shipped = {f"{folder}/{p.name}" for p in (ROOT / folder).iterdir() if p.name.endswith(pattern)}
        assert shipped and shipped - left_out <= names, sorted(shipped - left_out - names)
    assert not left_out & names, sorted(left_out & names)
    excluded = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["exclude-package-data"]
    assert sorted(excluded["fashionlab"]) == sorted(n.removeprefix("fashionlab/") for n in left_out)
    assert wheel.stat().st_size < PYPI_LIMIT_MB * 1e6, f"the wheel is {wheel.stat().st_size / 1e6:.1f} MB"
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


def test_no_notebook_loads_a_model_the_wheel_leaves_out():
    from fashionlab.zoo.registry import REPOSITORY_ONLY

    for source in (ROOT / "notebooks").glob("[0-9]*.py"):
        code = [line for line in source.read_text().splitlines() if not line.lstrip().startswith("#")]
        for name in REPOSITORY_ONLY:
            loads = [line for line in code if "load" in line and f'"{name}"' in line]
            assert not loads, f"{source.name} loads {name}, whose weights the wheel leaves out: {loads}"


def test_a_repository_only_model_missing_from_the_package_says_where_to_get_it(tmp_path, monkeypatch):
    from fashionlab.zoo import registry

    name = registry.REPOSITORY_ONLY[0]
    package = tmp_path / "weights"  # an installed wheel's folder: the config, no weights
    package.mkdir()
    shutil.copy(registry.WEIGHTS_DIR / f"{name}.json", package)
    monkeypatch.delenv(registry.WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"not in the installed package.*{registry.WEIGHTS_ENV}"):
        registry.verify_file(name, package)
    downloaded = tmp_path / "downloads"
    downloaded.mkdir()
    shutil.copy(registry.WEIGHTS_DIR / f"{name}.safetensors", downloaded)
    monkeypatch.setenv(registry.WEIGHTS_ENV, str(downloaded))
    assert registry.verify_file(name, package) == downloaded / f"{name}.safetensors"  # sha256 checked there
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / f"{name}.safetensors").write_bytes(b"not the weights")
    monkeypatch.setenv(registry.WEIGHTS_ENV, str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        registry.verify_file(name, package)
