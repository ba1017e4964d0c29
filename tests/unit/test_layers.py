"""The architecture holds: import-linter's contracts in pyproject.toml (the engine imports no
Textual, the layers core < remote < engine < actions < doctor/monitor < session < app < cli,
nothing in the product imports the lab), checked on every test run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    res = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 kept, 0 broken" in res.stdout


def test_every_engine_module_is_under_the_contract():
    """A new module or package joins the no-Textual contract (pyproject.toml) or is named here
    as a TUI module; every package of hubwizard/ is one of the layers or the lab."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    listed = set(contracts[0]["source_modules"])
    tui_side = {"hubwizard.app", "hubwizard.cli.main", "hubwizard.__init__", "hubwizard.cli"}
    top = {f"hubwizard.{p.stem}" for p in (ROOT / "hubwizard").glob("*.py")}
    packages = {f"hubwizard.{p.parent.name}" for p in (ROOT / "hubwizard").glob("*/__init__.py")}
    cli_modules = {f"hubwizard.cli.{p.stem}" for p in (ROOT / "hubwizard" / "cli").glob("*.py") if p.stem != "__init__"}
    assert (top | packages | cli_modules) - tui_side - listed == set(), "add these to the contract in pyproject.toml"
    layers = {name.strip() for layer in contracts[1]["layers"] for name in layer.replace(":", "|").split("|")}
    assert (top | packages) - {"hubwizard.__init__", "hubwizard.lab"} - layers == set(), "place these in the layers"
