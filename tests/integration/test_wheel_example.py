"""From a built wheel, not the source tree: `hubwizard init --example` writes the example site
file, which the error messages point to (issue 14 item 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_example_and_init_writes_it(tmp_path):
    source = tmp_path / "source"  # a copy: setuptools leaves build/ behind in the tree it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".mypy_cache", ".hypothesis", "build", "tests",
                                                                "*.egg-info", ".hubwizard", "docs", "__pycache__"))
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("hubwizard-*.whl")
    assert "hubwizard/examples/site.toml" in zipfile.ZipFile(wheel).namelist()

    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import hubwizard; print(hubwizard.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target)), where  # the wheel's copy, not the source tree
    res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "init", "--example", "-c", "new.toml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "new.toml").read_text() == (ROOT / "examples" / "site.toml").read_text()
