"""Reading the book on your own machine: the Makefile refuses a wrong Python with a clear message
before it installs anything, and ``make lab`` starts JupyterLab on the notebooks."""

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fake_python(folder: Path, version: str, has_venv: bool) -> Path:
    """A stand-in interpreter that reports ``version`` and (un)successfully imports venv."""
    major, minor = version.split(".")[:2]
    script = folder / "python-fake"
    script.write_text(f"""#!/bin/sh
case "$*" in
  --version) echo "Python {version}";;
  *ensurepip*) {'exit 0' if has_venv else 'exit 1'};;
  *version_info*) [ "{major}.{minor}" = "3.11" ] && exit 0 || exit 1;;
  *) exit 0;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.parametrize("version, has_venv, message", [
    ("3.9.18", True, "FashionLab needs Python 3.11; '{python}' is Python 3.9.18"),
    ("3.11.7", False, "has no venv module. On Debian or Ubuntu: apt-get install python3.11-venv"),
])
def test_make_refuses_a_python_it_cannot_use_before_installing_anything(tmp_path, version, has_venv, message):
    python = fake_python(tmp_path, version, has_venv)
    venv = tmp_path / "venv"
    run = subprocess.run(["make", "--no-print-directory", "install", f"PYTHON={python}", f"VENV={venv}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert message.format(python=python) in run.stdout + run.stderr
    assert not venv.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_starts_jupyterlab_on_the_notebooks():
    port = _free_port()
    args = f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.token=test-token"
    if os.geteuid() == 0:
        args += " --allow-root"
    lab = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline, listing = time.monotonic() + 90, None
        while time.monotonic() < deadline and lab.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=test-token", timeout=5) as r:
                    listing = json.load(r)
                break
            except OSError:
                time.sleep(1)
        assert listing is not None, f"JupyterLab did not answer on port {port}: {lab.poll()}"
        names = {item["name"] for item in listing["content"]}
        assert "01_garments.ipynb" in names and "10_zip.py" in names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=test-token", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
