"""The engine never imports Textual (the CLI runs it headless): import-linter's contract in
pyproject.toml, checked on every test run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_engine_imports_no_textual():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    res = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_every_engine_module_is_under_the_contract():
    """A new module joins the contract (pyproject.toml) or is named here as a TUI module."""
    import tomllib

    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    listed = set(contract["source_modules"])
    tui_side = {"hubwizard.app", "hubwizard.cli", "hubwizard.__init__"}
    modules = {f"hubwizard.{p.stem}" for p in (ROOT / "hubwizard").glob("*.py")} - tui_side
    assert modules - listed == set(), "add these to the contract in pyproject.toml"
