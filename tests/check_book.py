"""``make check-book``: open every page of the built book in headless Chromium, from disk and offline.

    python -m tests.check_book [_build/html] [--toc _toc.yml] [--screenshots _build/screenshots]

A page fails if it does not load, if an image on it does not resolve (a missing file, or anything
that would need the network), if a cell output says ``Traceback`` or ``Error``, or if maths is left
as raw TeX after MathJax has run (the book serves its own pinned MathJax, so this holds offline), if
it shows a notebook's Colab install cell (hidden by its ``remove-cell`` tag), or if the primary
sidebar holds a second search box beside the header's.
Screenshots of two pages are kept as artefacts. Chromium renders each page with JavaScript
(``--dump-dom`` after a virtual-time budget); the DOM it returns is checked here with the standard
library's HTML parser.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio")
"""Headless, and quiet: without the background-networking flags Chromium keeps trying hosts a closed
network refuses."""
BUDGET_MS = 30000
"""Virtual time Chromium gives a page's scripts (MathJax) before it dumps the DOM."""
OUTPUT_FAILURE = re.compile(r"Traceback|\b\w*Error\b")
RAW_TEX = re.compile(r"\\\(|\\\[|\\begin\{|\$\$")
SKIP_TEXT = {"script", "style", "pre", "code", "textarea", "mjx-container", "mjx-assistive-mml", "svg", "math"}


def chromium() -> str:
    """The Chromium executable, or a clear error saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("headless Chromium is needed: apt-get install chromium (make check-book does this as root)")


def toc_pages(toc: Path) -> list[str]:
    """The ``root`` and every ``file`` of a Jupyter Book ``_toc.yml``, in order (no YAML library
    needed for this flat format)."""
    pages = []
    for line in toc.read_text().splitlines():
        match = re.match(r"\s*(?:-\s*)?(root|file):\s*(\S+)", line)
        if match:
            pages.append(match.group(2))
    if not pages:
        raise ValueError(f"{toc} lists no pages")
    return pages


class _Page(HTMLParser):
    """What the checks need from a rendered DOM: image sources, the text of cell outputs, the
    prose (outside code, scripts and typeset maths) and how many formulas MathJax typeset."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[str] = []
        self.output_text: list[str] = []
        self.prose: list[str] = []
        self.typeset = 0
        self.sidebar_search = 0
        self.input_text: list[str] = []
        self._stack: list[tuple[str, bool, bool, bool]] = []  # (tag, in a cell output, text skipped, in a cell input)
        self._sidebar_depth: int | None = None  # stack depth of the primary sidebar, while inside it

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "mjx-container":
            self.typeset += 1
        if a.get("id") == "pst-primary-sidebar":
            self._sidebar_depth = len(self._stack)
        if self._sidebar_depth is not None and "search-button-field" in classes:
            self.sidebar_search += 1
        parent_out, parent_skip, parent_in = self._stack[-1][1:] if self._stack else (False, False, False)
        in_output = parent_out or "cell_output" in classes
        in_input = parent_in or "cell_input" in classes
        skip = parent_skip or tag in SKIP_TEXT
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "wbr", "col", "area", "base"):
            self._stack.append((tag, in_output, skip, in_input))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                if self._sidebar_depth is not None and len(self._stack) <= self._sidebar_depth:
                    self._sidebar_depth = None
                return

    def handle_data(self, data: str) -> None:
        if not self._stack or not data.strip():
            return
        _, in_output, skip, in_input = self._stack[-1]
        if in_input:
            self.input_text.append(data)
        if in_output:
            self.output_text.append(data)
        elif not skip:
            self.prose.append(data)


def _chromium_run(browser: str, user_dir: str, page: Path, *action: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` with a fresh profile and the scripts' time budget, doing ``action``."""
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", f"--virtual-time-budget={BUDGET_MS}",
                           *action, page.resolve().as_uri()], capture_output=True, text=True, timeout=180)


def render(page: Path, browser: str, user_dir: str) -> str:
    """The DOM of ``page`` after its scripts ran, as Chromium serialises it."""
    run = _chromium_run(browser, user_dir, page, "--dump-dom")
    if run.returncode != 0 or "<body" not in run.stdout:
        raise RuntimeError(f"Chromium could not load {page}: exit {run.returncode}, {run.stderr.strip()[-300:]}")
    return run.stdout


def problems(page: Path, dom: str) -> list[str]:
    """Everything wrong with one rendered page (empty: it passes)."""
    parsed = _Page()
    parsed.feed(dom)
    found = []
    for src in parsed.images:
        url = urlparse(src)
        if url.scheme == "data":
            continue
        if url.scheme in ("http", "https") or src.startswith("//"):
            found.append(f"image needs the network: {src}")
            continue
        target = Path(unquote(url.path)) if url.scheme == "file" else page.parent / unquote(url.path)
        if not target.is_file():
            found.append(f"image does not resolve: {src}")
    for text in parsed.output_text:
        match = OUTPUT_FAILURE.search(text)
        if match:
            found.append(f"an output says {match.group(0)!r}: {text.strip()[:120]!r}")
    if parsed.sidebar_search:
        found.append("a second search box: the primary sidebar has one beside the header's")
    if any("google.colab" in text for text in parsed.input_text):  # the cell's code, not prose about it
        found.append("the page shows a notebook's Colab install cell (tag it remove-cell)")
    prose = " ".join(parsed.prose)
    for match in RAW_TEX.finditer(prose):
        found.append(f"maths left as raw TeX: {prose[max(0, match.start() - 40):match.end() + 40]!r}")
        break
    return found


def screenshot(page: Path, out: Path, browser: str, user_dir: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium_run(browser, user_dir, page, "--window-size=1280,1800", f"--screenshot={out.resolve()}").check_returncode()
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {page}")


def check_book(html: Path, pages: list[str], screenshots: Path | None = None,
               shots: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """{page: problems} for every page (``pages`` relative to ``html``, without ``.html``)."""
    browser = chromium()
    report = {}
    with tempfile.TemporaryDirectory() as user_dir:
        for name in pages:
            page = html / f"{name}.html"
            if not page.is_file():
                report[name] = [f"page missing: {page}"]
                continue
            try:
                report[name] = problems(page, render(page, browser, user_dir))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                report[name] = [str(error)]
        if screenshots is not None:
            for name in shots:
                screenshot(html / f"{name}.html", screenshots / f"{name.replace('/', '_')}.png", browser, user_dir)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=Path("_build/html"))
    parser.add_argument("--toc", type=Path, default=Path("_toc.yml"))
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--shot", action="append", default=None,
                        help="a page to screenshot (repeatable; default: the intro and chapter 02)")
    args = parser.parse_args(argv)
    pages = toc_pages(args.toc)
    shots = tuple(args.shot or (pages[0], "notebooks/02_diffusion_basics"))
    report = check_book(args.html, pages, args.screenshots, shots)
    bad = {name: found for name, found in report.items() if found}
    for name, found in report.items():
        print(f"{'FAIL' if found else 'ok  '}  {name}")
        for problem in found:
            print(f"      {problem}")
    print(f"{len(report) - len(bad)} passed, {len(bad)} failed")
    if shots:
        print(f"screenshots: {', '.join(str(args.screenshots / (s.replace('/', '_') + '.png')) for s in shots)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
