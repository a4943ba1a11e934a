"""The documentation's commands work as written (issue #38).

Every ``bash`` and ``python`` block on docs/getting-started.md carries a marker on the line above it:
``<!-- test: run -->`` (run for real here, in seconds), ``<!-- test: slow -->`` (run for real in the slow
suite: the demo, training on hymenoptera) or ``<!-- test: never (why) -->``. The blocks run in a scratch
folder laid out like a clone: ``.venv`` is this interpreter's environment (so ``source .venv/bin/activate``
is the real one) and ``../shared/datasets/hymenoptera`` is the real dataset when it is beside the
repository, else a tiny generated folder of the same shape.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HYMENOPTERA, REPO, make_folder

PAGE = REPO / "docs" / "getting-started.md"
BLOCK = re.compile(r"^<!-- test: (\w+)[^>]*-->\n```(bash|python)\n(.*?)^```", re.M | re.S)
FENCE = re.compile(r"^```(bash|python)$", re.M)


def blocks(kind: str) -> list[tuple[str, str]]:
    """(language, code) of the page's blocks marked ``kind``, in page order."""
    return [(lang, code) for mark, lang, code in BLOCK.findall(PAGE.read_text()) if mark == kind]


@pytest.fixture
def clone_like(tmp_path) -> Path:
    """``tmp/repo`` (the working directory) with ``.venv`` and ``../shared/datasets/hymenoptera`` beside it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".venv").symlink_to(sys.prefix)
    data = tmp_path / "shared" / "datasets" / "hymenoptera"
    if HYMENOPTERA.is_dir():
        data.parent.mkdir(parents=True)
        data.symlink_to(HYMENOPTERA)
    else:
        for split, n in (("train", 6), ("val", 3)):
            make_folder(data / split, {"ants": n, "bees": n}, size=(48, 40))
    return repo


def run_block(lang: str, code: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    # The page activates .venv once ("then every command below works as written"): each block runs with
    # it active; PYTHONPATH: the checkout under test, whatever .venv has installed.
    bin_dir = str(cwd / ".venv" / "bin")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_block_on_the_getting_started_page_is_marked():
    marked = BLOCK.findall(PAGE.read_text())
    assert len(marked) == len(FENCE.findall(PAGE.read_text())), "a bash/python block without a <!-- test: --> marker"
    assert {m for m, _, _ in marked} <= {"run", "slow", "never"}
    assert blocks("run") and blocks("slow")


def test_getting_started_quick_commands_run_as_written(clone_like):
    (lang, code), *rest = blocks("run")
    assert not rest and "edgetransfer --help" in code and "targets list" in code and "data inspect" in code
    res = run_block(lang, code, clone_like, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "Usage: edgetransfer" in out and "quickstart" in out  # --help
    assert "pixel4-cpu" in out and "stm32h7" in out  # targets list
    assert "ants" in out and "bees" in out  # data inspect: the classes


@pytest.mark.slow
def test_getting_started_three_uses_run_as_written(clone_like):
    """Use 1 (data, train, export, validate), use 2 (the app), use 3 (check in CI), in that order."""
    uses = [b for b in blocks("slow") if "make demo" not in b[1]]
    assert len(uses) == 3
    for lang, code in uses:
        res = run_block(lang, code, clone_like, timeout=3600)
        assert res.returncode == 0, f"{code}\n{res.stdout}\n{res.stderr}"
    assert (clone_like / "runs" / "bees" / "report.html").is_file()
    assert (clone_like / "budgets.xml").read_text().lstrip().startswith("<?xml")


@pytest.mark.slow
def test_make_demo_runs_the_quickstart():
    """``make demo`` with this environment as its .venv (installed already: the install is not redone)."""
    (lang, code), *_ = [b for b in blocks("slow") if "make demo" in b[1]]
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists():
        pytest.skip(f"{sys.prefix} was not installed by `make install` (no {stamp})")
    existed = (REPO / "quickstart-out").exists()
    code = code.replace("make demo", f"make -C {REPO} -o {stamp} demo VENV={sys.prefix}")
    try:
        res = run_block(lang, code, REPO, timeout=3600)
        assert res.returncode == 0, res.stdout + res.stderr
        assert (REPO / "quickstart-out" / "report.html").is_file()
    finally:
        if not existed:
            shutil.rmtree(REPO / "quickstart-out", ignore_errors=True)


def test_the_site_builds_strict_with_no_warning(tmp_path):
    """``make docs``' command: a broken link, a page left out of the nav or an unresolved API name fails."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert not [line for line in res.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))], res.stderr
    schema = (tmp_path / "site" / "reference" / "target-profile" / "index.html").read_text()
    assert "runner.host" in schema and "memory.sram_kb" in schema and "budgets.latency_p90_ms" in schema
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "--max-accuracy-drop" in cli and "--junit" in cli
