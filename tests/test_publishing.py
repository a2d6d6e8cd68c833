"""The publishing files: the workflows parse and call Make targets that exist; the licence and
citation metadata agree with pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the bare key `on` as a boolean
    return data


@pytest.mark.parametrize("name", ["ci.yml", "pages.yml", "scheduled.yml"])
def test_workflows_parse_and_call_existing_make_targets(name):
    data = workflow(name)
    assert data["on"] and data["jobs"]
    targets = make_targets()
    called = []
    for job in data["jobs"].values():
        for step in job.get("steps", []):
            called += re.findall(r"\bmake ([\w-]+)", step.get("run", ""))
            if step.get("uses", "").startswith("actions/setup-python"):
                assert step["with"]["python-version"] == "3.11"
                assert step["with"].get("cache-dependency-path", "").split() == ["requirements.txt",
                                                                                 "constraints-book.txt"]
    assert set(called) <= targets, f"{name} calls Make targets that do not exist: {set(called) - targets}"
    if name != "pages.yml":
        assert "test" in called


def test_ci_runs_on_push_and_pull_request_and_pages_deploys_the_built_book_after_ci_passes():
    assert {"push", "pull_request"} <= set(workflow("ci.yml")["on"])
    pages = workflow("pages.yml")
    assert set(pages["on"]) == {"workflow_run", "workflow_dispatch"}, "Pages must not deploy on a bare push"
    run = pages["on"]["workflow_run"]
    assert run["workflows"] == [workflow("ci.yml")["name"]] and run["types"] == ["completed"] and run["branches"] == ["main"]
    assert "conclusion == 'success'" in pages["jobs"]["build"]["if"]
    assert "launch_buttons" in (config := yaml.safe_load((ROOT / "_config.yml").read_text()))
    assert "binderhub_url" not in config["launch_buttons"], "a Binder button needs a tested Binder environment"
    uploads = [s for s in pages["jobs"]["build"]["steps"] if s.get("uses", "").startswith("actions/upload-pages")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert "schedule" in workflow("scheduled.yml")["on"]


def test_licence_and_citation_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["license"] == "MIT" and citation["version"] == project["version"]
    assert citation["cff-version"] == "1.2.0" and citation["authors"]
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()


def test_the_repository_address_is_one_address():
    """_config.yml holds it; pyproject's URLs, the citation, setup.md's install line and every chapter
    that names the repository agree with it, and the issues button (errata) is on."""
    book = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = book["repository"]["url"].rstrip("/")
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    assert book["html"]["use_issues_button"] and book["html"]["use_repository_button"]
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == url and urls["Homepage"] == url and urls["Issues"] == f"{url}/issues"
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text())["repository-code"] == url
    assert f"git+{url}" in (ROOT / "book" / "setup.md").read_text()
    pages = [*(ROOT / "book").glob("*.md"), *(ROOT / "notebooks").glob("*.py"), ROOT / "README.md"]
    for page in pages:
        for found in re.findall(r"https://github\.com/fashionlab/[\w.-]+", page.read_text()):
            assert found == url, f"{page.name} names {found}, not {url}"


def test_the_book_toolchain_is_pinned_by_a_constraints_file_that_make_applies():
    from importlib.metadata import version

    pins = dict(line.split("==") for line in (ROOT / "constraints-book.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert {"sphinx-book-theme", "pydata-sphinx-theme", "myst-parser", "docutils", "nbclient"} <= set(pins)
    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, constraints-book.txt pins {pinned}"
    assert "-r requirements.txt -c constraints-book.txt" in (ROOT / "Makefile").read_text()


def _install_cell(source: Path) -> str:
    cells = source.read_text().split("\n# %%")
    found = [c for c in cells if "google.colab" in c]
    assert len(found) == 1, f"{source.name} needs exactly one Colab install cell"
    return found[0].split("\n", 1)[1]


def install_ref() -> str:
    """The git ref the install cells and the launch buttons use: the release tag of pyproject's
    version once that tag exists, else ``main`` (a tag that does not exist is never tried)."""
    import subprocess

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    tags = subprocess.run(["git", "tag", "--list", f"v{version}"], cwd=ROOT, capture_output=True, text=True).stdout
    return f"v{version}" if tags.split() else "main"


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("[0-9]*.py")), ids=lambda p: p.stem)
def test_every_notebook_has_a_hidden_colab_install_cell_at_a_version_that_exists(source, monkeypatch):
    import os
    import subprocess
    import sys
    import types

    from fashionlab.smoke import NOTEBOOK_FULL

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    ref = install_ref()
    assert config["repository"]["branch"] == ref, "the launch buttons must open the notebook the cell installs"
    code = _install_cell(source)
    cells = [c.split("\n", 1) for c in source.read_text().split("\n# %%")[1:]]
    header, first_code = next(c for c in cells if "[markdown]" not in c[0])
    assert "google.colab" in first_code, "the install cell must be the first code cell"
    assert header.strip() == 'tags=["remove-cell"]', "the install cell is hidden in the rendered book"
    assert f'"{config["repository"]["url"]}", "{ref}"' in code
    has_profile = "PROFILE = " in code
    assert has_profile == (source.name[:2] in NOTEBOOK_FULL), (
        "only chapters whose notebook runs under full (smoke.NOTEBOOK_FULL) carry the PROFILE line")

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append((args, kw)))
    monkeypatch.delenv("FASHIONLAB_INSTALL", raising=False)
    for env in (None, "full"):
        if env is None:
            monkeypatch.delenv("FASHIONLAB_PROFILE", raising=False)
        else:
            monkeypatch.setenv("FASHIONLAB_PROFILE", env)
        scope = {}
        exec(compile(code, source.name, "exec"), scope)  # not on Colab: installs nothing
        assert calls == []
        if has_profile:  # honoured off Colab too: the environment variable, else tiny
            assert scope["PROFILE"] == (env or "tiny") == os.environ["FASHIONLAB_PROFILE"]
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(code, source.name, "exec"), {})
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert calls == [(pip + [f"fashionlab @ git+{config['repository']['url']}@{ref}"], {"check": True})]
    monkeypatch.setenv("FASHIONLAB_INSTALL", "/wheels/fashionlab-0.1.0-py3-none-any.whl")  # make colab-check
    exec(compile(code, source.name, "exec"), {})
    assert calls[-1] == (pip + ["/wheels/fashionlab-0.1.0-py3-none-any.whl"], {"check": True})


def test_the_package_accepts_colabs_ipywidgets_7():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("ipywidgets")]
    assert spec == "ipywidgets>=7.6", "Colab ships ipywidgets 7.x; the editor's widgets all exist since 7.6"


def test_ci_checks_the_rendered_book_with_the_pinned_local_mathjax():
    run = (ROOT / ".ci" / "run").read_text()
    assert run.index("make test") < run.index("make colab-check") < run.index("make check-book")
    steps = [s.get("run", "") for s in workflow("ci.yml")["jobs"]["test"]["steps"]]
    assert "make check-book" in steps and "make colab-check" in steps
    makefile = (ROOT / "Makefile").read_text()
    version = re.search(r"^MATHJAX_VERSION := (\S+)$", makefile, re.M).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)  # an exact release, never "latest"
    assert re.search(r"^MATHJAX_SHA256 := [0-9a-f]{64}$", makefile, re.M)
    sphinx = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert sphinx["mathjax_path"] == "mathjax/tex-svg.js" and sphinx["html_static_path"] == ["book/_static"]
    for target in ("book", "check-book"):  # both unpack the pinned copy first
        assert re.search(rf"^{target}: .*\$\(MATHJAX\)", makefile, re.M), target


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RECORD = "application/papermill.record/"  # myst-nb glue records: not rendered where they are made


def _figure_cells(path: Path):
    import json

    for k, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        shown = [o for o in cell.get("outputs", []) if o["output_type"] in ("display_data", "execute_result")
                 and not all(m.startswith(RECORD) for m in o.get("data", {}))]
        if any("image/png" in o.get("data", {}) for o in shown):
            yield k, cell, shown


def test_every_figure_has_a_caption_a_unique_name_and_alt_text():
    """myst-nb wraps every displayed output of a cell with figure metadata in that figure, so a
    figure cell must display its image alone (else the name is defined twice)."""
    names = []
    for path in NOTEBOOKS:
        for k, cell, shown in _figure_cells(path):
            where = f"{path.name} cell {k}"
            meta = cell["metadata"].get("mystnb", {})
            figure, image = meta.get("figure", {}), meta.get("image", {})
            assert figure.get("caption", "").strip(), f"{where}: no caption"
            assert re.fullmatch(r"fig-[a-z0-9-]+", figure.get("name", "")), f"{where}: name {figure.get('name')!r}"
            assert len(image.get("alt", "")) >= 20, f"{where}: no alt text"
            assert len(shown) == 1, f"{where}: the figure shares its cell with {len(shown) - 1} other output(s)"
            names.append(figure["name"])
    assert len(names) >= 80 and len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


CHAPTERS = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")) if not p.stem.startswith("99")]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_cite_and_fold_a_solution_under_every_exercise(path):
    """Every chapter (the reproduction report is not one) cites with {cite}, and every numbered
    exercise has its solution in a dropdown admonition a teacher can strip."""
    text = path.read_text()
    assert "{cite" in text, f"{path.name} cites nothing with {{cite}}"
    exercises = text[text.index("# ## Exercises"):]
    numbered = re.findall(r"^# \*\*(\d+)\.\*\*", exercises, re.M)
    assert numbered == [str(k) for k in range(1, len(numbered) + 1)] and numbered, numbered
    assert exercises.count("# :class: dropdown") == len(numbered)


def test_glue_writes_what_myst_nb_glue_writes_without_needing_myst_nb(monkeypatch):
    """The notebooks glue with fashionlab.viz.glue, whose display output is myst-nb's own format, so
    the book builds from it while the package (and Colab) does without myst-nb."""
    import IPython.display
    import pandas as pd
    from myst_nb.ext import glue as myst_glue

    from fashionlab.viz import glue

    ours, theirs = [], []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **kw: ours.append((a, kw)))
    monkeypatch.setattr(myst_glue, "ipy_display", lambda *a, **kw: theirs.append((a, kw)))
    for name, value, display in (("n", "0.52", False), ("x", 3.25, True), ("t", pd.DataFrame({"a": [1, 2]}), False)):
        glue(name, value, display=display)
        myst_glue.glue(name, value, display=display)
    assert ours == theirs and len(ours) == 3
    with pytest.raises(ValueError, match="name"):
        glue("", 1)
    for page in (ROOT / "notebooks").glob("*.py"):
        assert "myst_nb" not in page.read_text(), f"{page.name} imports myst_nb, which the package does not declare"


def test_setup_pages_full_table_is_the_smoke_commands_table():
    """book/setup.md's per-chapter table says what fashionlab.smoke checks (ok / tiny only) and which
    notebooks honour PROFILE (smoke.NOTEBOOK_FULL), so the docs and the code cannot drift apart."""
    from fashionlab.smoke import CHECKS, NOTEBOOK_FULL

    rows = {}
    for line in (ROOT / "book" / "setup.md").read_text().splitlines():
        match = re.match(r"\| (\d\d) [^|]+\| ([^|]+) \| ([^|]+) \|$", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    chapters = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py") if not p.name.startswith("99"))
    assert sorted(rows) == chapters == sorted(CHECKS)
    for chapter, (notebook, smoke) in rows.items():
        assert notebook.startswith("honours `PROFILE`") == (chapter in NOTEBOOK_FULL), (chapter, notebook)
        if chapter not in NOTEBOOK_FULL:
            assert notebook.startswith("tiny"), (chapter, notebook)
        status = CHECKS[chapter][1]
        assert smoke.startswith(status) and (status == "tiny only") == notebook.startswith("tiny only"), (chapter, smoke)


def test_setup_pages_commands_exist():
    """Every `make` target setup.md names exists, and every `python -m` command it shows accepts the
    options it is shown with."""
    import subprocess
    import sys

    text = (ROOT / "book" / "setup.md").read_text()
    targets = make_targets()
    named = set(re.findall(r"(?m)(?:^|`|=full )make (?:[A-Z_]+=\S+ )*([a-z][\w-]*)", text))
    assert {"lab", "test", "book", "colab-check", "nb", "notebooks"} <= named <= targets, named - targets
    for module, args in set(re.findall(r"python -m (fashionlab[\w.]*) ([^`\n#]*)", text)):
        usage = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert usage.returncode == 0, (module, usage.stderr[-500:])
        for option in re.findall(r"--[\w-]+", args):
            assert option in usage.stdout, f"setup.md runs {module} with {option}, which it does not accept"
