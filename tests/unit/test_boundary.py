"""The engine runs headless: importing it (and the CLI, session, monitor model, doctor) must
work with Textual absent. An import hook makes `import textual` fail in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import sys

class NoTextual:
    def find_spec(self, name, path=None, target=None):
        if name == "textual" or name.startswith("textual."):
            raise ImportError("textual is blocked in this test")
        return None

sys.meta_path.insert(0, NoTextual())
import hubwizard.engine.runner, hubwizard.cli.main, hubwizard.session, hubwizard.monitor, hubwizard.core.sitefile
import hubwizard.remote.hostprobe, hubwizard.cli.init
try:
    import hubwizard.doctor.model
except ImportError as exc:
    if "textual" in str(exc):
        raise
assert not any(m == "textual" or m.startswith("textual.") for m in sys.modules), "textual was imported"
hubwizard.cli.main.build_parser()
print("ok")
"""


def test_engine_and_cli_import_without_textual():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_the_hook_really_blocks_textual():
    res = subprocess.run([sys.executable, "-c", CODE.split("import hubwizard.engine.runner")[0] + "import textual.app\n"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "textual is blocked" in res.stderr
