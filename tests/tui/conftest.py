"""Helpers for driving the app headless: an app factory and a wait for its workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hubwizard.app import HubwizardApp
from tests.conftest import BASIC_RECIPES


def make_app(site: Path | None, start: str = "start", recipes: Path | None = BASIC_RECIPES, **kw) -> HubwizardApp:
    return HubwizardApp(site, start=start, recipes_dir=str(recipes) if recipes else None, **kw)


async def settle(pilot, app, rounds: int = 3) -> None:
    """Let workers finish and their messages be handled."""
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause()


def basic_plus(tmp_path: Path, name: str, recipe: str) -> Path:
    """A recipes folder: the basic track plus the file ``name`` holding ``recipe``."""
    d = tmp_path / "recipes"
    d.mkdir()
    shutil.copy(BASIC_RECIPES / "10-basic.yaml", d / "10-basic.yaml")
    (d / name).write_text(recipe)
    return d


@pytest.fixture
def failing_recipes(tmp_path: Path) -> Path:
    """The basic track plus a step that fails with a known fix hint."""
    return basic_plus(tmp_path, "20-fails.yaml",
        "- id: broken\n  title: A step that fails\n  description: Fails on purpose.\n  order: 25\n"
        "  targets: hub\n  check:\n    - test -f /nonexistent/marker\n"
        "  apply:\n    - run: \"echo 'E: Unable to locate package jupyterhub-nope' >&2; exit 100\"\n"
        "  fix:\n    - match: Unable to locate package\n      hint: run apt-get update on the host, then Retry\n")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests in a fresh event loop (no async plugin needed)."""
    import asyncio
    import inspect

    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None
