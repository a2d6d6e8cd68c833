"""``make colab-check``: every chapter as a Colab user meets it, on this machine.

1. Build the package's wheel from a copy of its sources.
2. Make a fresh virtual environment holding only what a Colab runtime has before the notebook's
   first cell: PyTorch and torchvision, and the Jupyter kernel machinery (ipykernel, nbclient). No
   development package (myst-nb, jupytext, nbval, pytest) is there, and the checkout is not on the path.
3. Install a stand-in ``google.colab`` module that the kernel imports at start, as Colab's does, so
   each notebook's install cell runs: ``FASHIONLAB_INSTALL`` points it at the local wheel instead of
   the repository, and ``pip`` installs the wheel with exactly the dependencies it declares (at the
   versions ``requirements.txt`` pins, through ``PIP_CONSTRAINT``, so that the check is repeatable).
4. Execute every notebook, in a folder outside the repository, top to bottom.

It fails when a notebook imports anything the wheel does not declare, when a file it reads is not
in the wheel, or when any cell raises. ``--notebooks 01,06`` runs a subset; ``--keep`` reuses the
environment of the previous run (only the wheel is rebuilt and reinstalled).

``--full 01`` executes only the chapters it names whole; every other chapter runs its install cell
and then every import statement of the notebook (its top-level ``import`` / ``from`` lines), which
is what catches an undeclared dependency in seconds. ``.ci/run`` uses that form: a whole second
execution of every chapter (about as long as nbval's, some 35 minutes on two cores) would not fit
CI's 90 minutes beside ``make test``. ``make colab-check`` with no arguments executes every chapter
whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB_PREINSTALLED = ("torch", "torchvision", "ipykernel", "nbclient", "nbformat")
"""What the environment holds before a notebook's install cell: Colab's PyTorch and its kernel."""
DEVELOPMENT_ONLY = ("myst_nb", "jupytext", "nbval", "pytest", "jupyter_book")
"""Must not be importable there: a notebook that needs one would fail on Colab."""

RUNNER = r'''
import sys, time
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

spec = KernelSpecManager().get_kernel_spec("python3")
if spec.argv[0] != sys.executable:
    sys.exit(f"the python3 kernel runs {spec.argv[0]}, not this environment's {sys.executable}")
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
for cell in nb.cells:
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
start = time.perf_counter()
NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, path)
print(f"{time.perf_counter() - start:.0f}")
'''

FAKE_COLAB = '''"""A stand-in for Colab's ``google.colab`` (make colab-check): its presence is what the
notebooks' install cells test for."""
'''


def pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` from requirements.txt (and constraints-book.txt) for each name."""
    found = {}
    for file in ("requirements.txt", "constraints-book.txt"):
        for line in (ROOT / file).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==")
                found[name.strip().lower().replace("_", "-")] = version.strip()
    return [f"{n}=={found[n]}" if n in found else n for n in names]


def build_wheel(out: Path) -> Path:
    """The wheel, built from a copy of the sources (setuptools writes build/ beside what it builds)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy(ROOT / name, source / name)
        shutil.copytree(ROOT / "fashionlab", source / "fashionlab", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(out), str(source)], check=True)
    (wheel,) = out.glob("fashionlab-*.whl")
    return wheel


def colab_environment(venv: Path, keep: bool) -> Path:
    """A fresh venv with Colab's preinstalled PyTorch and kernel, the fake google.colab, and nothing else."""
    python = venv / "bin" / "python"
    if keep and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins(COLAB_PREINSTALLED)], check=True)
    subprocess.run([str(python), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                   check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    fake = Path(purelib) / "google" / "colab"  # a namespace package `google`, as Colab's
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text(FAKE_COLAB)
    return python


def imports_only(path: Path) -> None:
    """Rewrite the notebook at ``path`` to its install cell (the first code cell) followed by one cell
    holding every top-level import statement of the notebook, in order."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    lines = []
    for cell in code[1:]:
        for line in cell.source.splitlines():
            if line.startswith(("import ", "from ")) and line not in lines:
                lines.append(line)
    nb.cells = [code[0], nbformat.v4.new_code_cell("\n".join(lines))]
    nbformat.write(nb, path)


def check_isolated(python: Path) -> None:
    code = ("import importlib.util, sys; names = sys.argv[1:]; "
            "print(' '.join(n for n in names if importlib.util.find_spec(n)))")
    found = subprocess.run([str(python), "-c", code, *DEVELOPMENT_ONLY, "fashionlab"], check=True,
                           capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout.split()
    if found:
        raise SystemExit(f"the Colab environment must not hold {found} before the install cell")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.colab_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "_build" / "colab")
    parser.add_argument("--notebooks", default=None, help="comma-separated prefixes, e.g. 01,06 (default: all)")
    parser.add_argument("--keep", action="store_true", help="reuse the previous run's environment")
    parser.add_argument("--full", default=None,
                        help="comma-separated prefixes executed whole; the others run their install cell and "
                             "imports only (default: every chapter whole)")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        wanted = [p.strip().zfill(2) for p in args.notebooks.split(",") if p.strip()]
        unknown = [w for w in wanted if not any(nb.name.startswith(w) for nb in notebooks)]
        if unknown:
            parser.error(f"no notebook starts with {unknown}")
        notebooks = [nb for nb in notebooks if nb.name[:2] in wanted]
    full = None if args.full is None else {p.strip().zfill(2) for p in args.full.split(",") if p.strip()}
    work = args.workdir.resolve()
    start = time.perf_counter()
    wheel = build_wheel(work / "dist")
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB")
    python = colab_environment(work / "venv", args.keep)
    if args.keep:
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "fashionlab"], check=False)
    check_isolated(python)
    print(f"Colab environment ready in {time.perf_counter() - start:.0f} s: {', '.join(pins(COLAB_PREINSTALLED))}, "
          "a stand-in google.colab; no development packages")

    runner = work / "run_notebook.py"
    runner.write_text(RUNNER)
    ipython_dir = work / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # Colab's kernel has it loaded\n")
    outside = Path(tempfile.mkdtemp(prefix="colab-"))  # outside the repository
    drop = ("PYTHONPATH", "FASHIONLAB_PROFILE", "FASHIONLAB_RESULTS", "FASHIONLAB_CACHE", "VIRTUAL_ENV",
            "JUPYTER_PATH", "JUPYTER_DATA_DIR", "IPYTHONDIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(FASHIONLAB_INSTALL=str(wheel), PIP_CONSTRAINT=str(ROOT / "requirements.txt"),
               IPYTHONDIR=str(ipython_dir), JUPYTER_DATA_DIR=str(work / "jupyter-data"),
               FASHIONLAB_CACHE=str(work / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    failed = []
    for notebook in notebooks:
        copy = outside / notebook.name
        shutil.copy(notebook, copy)
        whole = full is None or notebook.name[:2] in full
        if not whole:
            imports_only(copy)
        run = subprocess.run([str(python), str(runner), str(copy), str(outside)], cwd=outside, env=env,
                             capture_output=True, text=True)
        what = "whole" if whole else "install cell and imports"
        if run.returncode:
            failed.append(notebook.name)
            print(f"FAILED  {notebook.name} ({what})\n{run.stderr[-4000:]}", flush=True)
        else:
            print(f"ok      {notebook.name}  {run.stdout.split()[-1]} s ({what})", flush=True)
    installed = subprocess.run([str(python), "-c", "import fashionlab; print(fashionlab.__file__)"],
                               capture_output=True, text=True, cwd=outside).stdout.strip()
    if notebooks and not failed and not installed.startswith(str(work / "venv")):
        failed.append(f"fashionlab came from {installed!r}, not the wheel")
    shutil.rmtree(outside, ignore_errors=True)
    total = time.perf_counter() - start
    print(f"colab-check took {total:.0f} s" + (f"; failed: {failed}" if failed else ""))
    print(f"colab-check: {len(notebooks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
