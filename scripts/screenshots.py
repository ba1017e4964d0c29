#!/usr/bin/env python3
"""Regenerate docs/screenshots/*.svg: Textual's own SVG export of the main screens.

Driven headless (App.run_test) with the scenes of tests/tui/demo.py: fixed data, nothing
contacted, so the pictures change only when a screen does. Run from the repository root:
    python scripts/screenshots.py [--size 120x40] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tui.demo import SCENES  # noqa: E402 - after the path is set

PICTURES = ("start", "inventory", "settings", "plan", "run", "run-failure", "monitor", "monitor-tasks", "doctor",
            "hostkey")


async def shoot(name: str, out: Path, size: tuple[int, int]) -> Path:
    from textual.widgets import Input

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            app, before = SCENES[name](Path(tmp))
            async with app.run_test(size=size) as pilot:
                await before(pilot)
                for widget in app.screen.query(Input):
                    widget.cursor_blink = False
                await pilot.pause()
                app.title = "hubwizard"
                return Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))
        finally:
            os.chdir(cwd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40", help="terminal size, COLUMNSxROWS")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    cols, rows = (int(x) for x in args.size.split("x"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TZ", "UTC")
    for name in PICTURES:
        print(asyncio.run(shoot(name, out, (cols, rows))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
