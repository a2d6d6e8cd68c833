"""Profiles, devices, paths, seeding helpers and atomic results files.

Chapter: "Setup" (``book/setup.md``).

Two profiles share one code path:

=========  ================================================================
``tiny``   default; offline, CPU, models trained by this project on Garments
``full``   real pretrained checkpoints from the hub (Colab / any CUDA GPU)
=========  ================================================================

The profile comes from the ``FASHIONLAB_PROFILE`` environment variable, unless a
notebook overrides it with :func:`use_profile`. The override is kept in the
environment variable itself, so there is no hidden module state: a child
process (a DataLoader worker, a test subprocess) sees the same profile.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Iterator

import torch

def check_number(name: str, value: object, low: float | None = None, high: float | None = None, *,
                 integer: bool = False, low_open: bool = False, high_open: bool = False) -> None:
    """Refuse, with a ``ValueError`` that names ``name``, a ``value`` that is not a finite real number
    (an int if ``integer``) in [``low``, ``high``] (open ends with ``low_open`` / ``high_open``).

    Every config field that holds a strength, a weight, a rate or a count goes through this, because
    a plain ``value < 0`` check lets NaN through (every comparison with NaN is false) and infinity
    past any lower bound."""
    import math
    import numbers

    wanted = numbers.Integral if integer else numbers.Real
    kind = "an int" if integer else "a finite number"
    ends = []
    if low is not None:
        ends.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        ends.append(f"{'<' if high_open else '<='} {high:g}")
    expected = kind + (" " + " and ".join(ends) if ends else "")
    if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


PROFILES = ("tiny", "full")
PROFILE_ENV = "FASHIONLAB_PROFILE"
DEVICE_ENV = "FASHIONLAB_DEVICE"
CACHE_ENV = "FASHIONLAB_CACHE"
RESULTS_ENV = "FASHIONLAB_RESULTS"
TRAINING_ENV = "FASHIONLAB_TRAINING"

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "zoo" / "weights"
HUB_HOST = "huggingface.co"


def cache_dir() -> Path:
    """Where large regenerable files (pre-rendered training sets) go: ``$FASHIONLAB_CACHE`` or
    ``~/.cache/fashionlab``. Never committed; safe to delete."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fashionlab")


def results_dir() -> Path:
    """Where the chapters' precomputed tables live: ``$FASHIONLAB_RESULTS``, or the package's own
    ``experiments/results`` folder. The files there ship as package data, so a notebook finds them
    after ``pip install`` (Colab) as well as in a checkout; the ``experiments`` CLIs write there."""
    return Path(os.environ.get(RESULTS_ENV) or PACKAGE_DIR / "experiments" / "results")


def training_dir() -> Path:
    """Where zoo recipes keep their resume state (``<name>/checkpoint.pt``, ``loss.csv``):
    ``$FASHIONLAB_TRAINING``, else ``training/`` at the root of a source checkout, else
    ``training/`` under :func:`cache_dir` (an installed package has no checkout)."""
    if os.environ.get(TRAINING_ENV):
        return Path(os.environ[TRAINING_ENV])
    root = PACKAGE_DIR.parent
    return root / "training" if (root / "pyproject.toml").is_file() else cache_dir() / "training"


def write_json_atomic(data: dict, path: str | Path) -> None:
    """Write ``data`` as indented, key-sorted JSON through a temporary file and a rename, so a
    killed run never leaves a half-written results file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {name!r}")
    return name


def get_profile() -> str:
    """The active profile: ``FASHIONLAB_PROFILE`` or ``"tiny"``."""
    return _check_profile(os.environ.get(PROFILE_ENV, "tiny").strip().lower())


def use_profile(name: str) -> str:
    """Switch profile for this process (and its children); returns the name.

    Call it in a notebook's first cell: ``fashionlab.config.use_profile("full")``.
    """
    os.environ[PROFILE_ENV] = _check_profile(name)
    return name


def get_device(override: str | torch.device | None = None) -> torch.device:
    """Pick a device: ``override``, else ``FASHIONLAB_DEVICE``, else cuda, mps, cpu."""
    requested = override if override is not None else os.environ.get(DEVICE_ENV)
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {requested!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed``.

    Library code never seeds globally; every sampling function takes one of these.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a seeded *private copy* of the global CPU RNG, restored afterwards.

    For the one thing that draws from the global RNG and takes no generator: parameter
    initialisation inside diffusers and open_clip. The caller's random state is left as it was,
    so the library never seeds globally::

        with config.seeded(0):
            unet = UNet2DModel(**kwargs)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def spawn_generators(seed: int, n: int, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """``n`` independent generators derived from one seed (seed, seed+1, ...) mixed by a hash.

    Useful when several loops must not share a random stream.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    base = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, 2**62, (n,), generator=base).tolist()
    return [make_generator(int(s), device) for s in seeds]


def hub_endpoint() -> str:
    """The Hugging Face endpoint the hub libraries use: ``$HF_ENDPOINT`` (a mirror) or the hub."""
    return os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}"


def _host_and_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "//" in url else f"https://{url}")
    if not parts.hostname:
        raise ValueError(f"url must name a host, got {url!r}")
    return parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)


def hub_reachable(timeout: float = 3.0, url: str | None = None) -> bool:
    """True if a TCP connection to the host of ``url`` (default: :func:`hub_endpoint`) opens within
    ``timeout`` seconds; for the Hugging Face endpoint, False at once under ``HF_HUB_OFFLINE=1``.

    ``full``-profile loaders call this first so that, offline, they fail at once
    with an actionable message instead of hanging on retries.
    """
    address = _host_and_port(url or hub_endpoint())
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") and address[0] == _host_and_port(hub_endpoint())[0]:
        return False
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def hf_cached(repo_id: str, filename: str, repo_type: str = "model") -> bool:
    """True if ``filename`` of hub repository ``repo_id`` is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)


def torch_hub_cached(url: str) -> bool:
    """True if the file at ``url`` is already in torch.hub's checkpoint folder (torchvision weights)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


def require_hub(what: str, url: str | None = None, cached: bool = False) -> None:
    """Raise a clear ``RuntimeError`` if ``what`` must be downloaded from ``url``'s host (default:
    the Hugging Face endpoint, honouring ``$HF_ENDPOINT``) and that host cannot be reached.
    ``cached=True`` (the caller found the files locally) always passes: cached weights load offline."""
    if cached:
        return
    host = _host_and_port(url or hub_endpoint())[0]
    if not hub_reachable(url=url):
        raise RuntimeError(
            f"{what} needs {host}, which cannot be reached from this machine (and the files are not in the "
            f"local cache). Use the offline 'tiny' profile (FASHIONLAB_PROFILE=tiny or "
            f"fashionlab.config.use_profile('tiny')), or run on a machine with internet access "
            f"such as Colab."
        )
