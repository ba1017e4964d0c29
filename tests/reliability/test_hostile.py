"""Hostile input: every text field of the site file and every CLI argument.

Each hostile value is either rejected with exit 2 and a message naming the field, or reaches
the host as one literal value (checked byte for byte through a recipe that echoes every field);
no marker file ever appears, no traceback ever reaches the user. The CLI runs in-process
(hubwizard.cli.main.main) for speed, plus a few real subprocess runs.

Examples per property: see EXAMPLES, times HUBWIZARD_RELIABILITY_SCALE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import run_cli
from tests.reliability.crash import ROOT, scale
from tests.reliability.hostile import (
    base_site,
    echo_recipe,
    hostile_text,
    label,
    string_fields,
    to_toml,
    with_value,
)

FIELDS = string_fields()
DEEP = "/".join(["d"] * 12)  # render -o values climb with '..': they must stay inside the test's folder
EXAMPLES = {"apply": 150, "render": 200, "cli": 200}
TRIED: dict[str, int] = {"apply": 0, "render": 0, "cli": 0}


def _settings(kind: str):
    # Seed and example database come from the profile in tests/conftest.py (fixed seed in CI).
    return settings(max_examples=EXAMPLES[kind] * scale(), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@dataclass
class Arena:
    root: Path
    marker: Path
    out: Path
    recipes: Path

    def write(self, data: dict) -> Path:
        shutil.rmtree(self.root / ".hubwizard", ignore_errors=True)  # every example starts fresh
        self.out.unlink(missing_ok=True)
        site = self.root / "site.toml"
        site.write_text(to_toml(data), encoding="utf-8")
        return site


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Arena:
    root = tmp_path_factory.mktemp("hostile")
    (root / "marker-dir").mkdir()
    recipes = root / "recipes"
    recipes.mkdir()
    out = root / "fields.out"
    (recipes / "echo.yaml").write_text(echo_recipe(FIELDS, out))
    return Arena(root, root / "marker-dir" / "PWNED", out, recipes)


def _clean(code: int, stdout: str, stderr: str) -> None:
    """Checks without pytest's assertion diff: outputs here reach 70 000 characters, and a diff
    of each one at every shrink step once kept this suite busy for 20+ minutes."""
    text = stdout + stderr
    for bad in ("Traceback", "internal error"):
        if bad in text:
            pytest.fail(f"{bad!r} reached the user (exit {code}); output tail:\n{text[-2000:]}", pytrace=False)
    if code not in (0, 1, 2, 3):
        pytest.fail(f"exit {code}; output tail:\n{text[-2000:]}", pytrace=False)


def _no_marker(arena: Arena) -> None:
    found = list(arena.marker.parent.iterdir())
    assert not found, f"a hostile value ran a command: {found}"


def _fields_on_host(out: Path) -> dict[str, str]:
    parts = out.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1]
    return dict(zip(parts[0::2], parts[1::2], strict=True))


def _hostile_fields(arena: Arena, data) -> list[tuple[tuple, bool, str]]:
    """1 to 5 distinct fields, each with its hostile value."""
    chosen = data.draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5, unique=True), label="fields")
    return [(path, is_list, data.draw(hostile_text(arena.marker), label=label(path))) for path, is_list in chosen]


def _site_with(arena: Arena, fields: list[tuple[tuple, bool, str]]) -> Path:
    site = base_site(arena.root)
    for path, is_list, value in fields:
        site = with_value(site, path, [value] if is_list else value)
    return arena.write(site)


@_settings("apply")
@given(data=st.data())
def test_site_fields_rejected_or_literal_on_host(arena, data):
    fields = _hostile_fields(arena, data)
    TRIED["apply"] += len(fields)
    site = _site_with(arena, fields)
    code, stdout, stderr = run_cli("apply", "-c", str(site), "--yes", "--recipes", str(arena.recipes))
    _clean(code, stdout, stderr)
    _no_marker(arena)
    if code == 2:
        assert "bad input" in stderr, stderr[-2000:]
        assert any(str(path[-1]) in stderr for path, _, _ in fields), stderr[-2000:]
        return
    assert code == 0, stdout[-2000:] + stderr[-2000:]
    on_host = _fields_on_host(arena.out)
    for path, _, value in fields:
        got = on_host[label(path)]
        if got != value:  # no `assert ==`: its diff of two 70 000-character values takes minutes
            pytest.fail(f"{label(path)} arrived changed on the host: sent {len(value)} chars {value[:200]!r}, "
                        f"got {len(got)} chars {got[:200]!r}", pytrace=False)


@_settings("render")
@given(data=st.data())
def test_site_fields_rendered_or_rejected(arena, data):
    fields = _hostile_fields(arena, data)
    TRIED["render"] += len(fields)
    site = _site_with(arena, fields)
    out = arena.root / "rendered"
    shutil.rmtree(out, ignore_errors=True)
    code, stdout, stderr = run_cli("render", "-c", str(site), "-o", str(out))
    _clean(code, stdout, stderr)
    _no_marker(arena)
    assert code in (0, 2), stdout[-2000:] + stderr[-2000:]
    if code == 2:
        assert "bad input" in stderr, stderr[-2000:]


# ----------------------------------------------------------------------------- CLI arguments

# Commands run in-process with a hostile value in one argument. wizard/monitor (a TUI),
# init (questions) and lab up/down (build or remove machines) are left out: their arguments
# are covered by the subprocess cases below and by their owners' suites.
def _cli_cases(site: str, tmp: Path) -> list[tuple[str, list[str]]]:
    return [
        ("plan --from", ["plan", "-c", site, "--from", "{v}"]),
        ("plan --only", ["plan", "-c", site, "--only", "{v}"]),
        ("apply --from", ["apply", "-c", site, "--yes", "--from", "{v}"]),
        ("apply --only", ["apply", "-c", site, "--yes", "--only", "{v}"]),
        ("verify -c", ["verify", "-c", "{v}"]),
        ("status -c", ["status", "-c", "{v}"]),
        ("plan -c", ["plan", "-c", "{v}"]),
        ("render -o", ["render", "-c", site, "-o", str(tmp / "r" / DEEP) + "/{v}"]),
        ("add-node HOST", ["add-node", "-c", site, "{v}", "--yes"]),
        *([("doctor -c", ["doctor", "-c", "{v}"])] if _importable("doctor") else []),
        *([("teardown -c", ["teardown", "-c", "{v}"])] if _importable("scale") else []),
        ("lab status --name", ["lab", "status", "--name", "{v}"]),
        ("lab up --nodes", ["lab", "up", "--name", "INVALID NAME", "--nodes", "{v}"]),
        ("lab up --name", ["lab", "up", "--nodes", "-1", "--name", "{v}"]),
    ]


def _importable(module: str) -> bool:
    """Commands whose module is still being written are left out until it exists."""
    import importlib.util

    return importlib.util.find_spec(f"hubwizard.{module}") is not None


@pytest.fixture(scope="module")
def cli_site(arena) -> str:
    return str(arena.write(base_site(arena.root)))


@_settings("cli")
@given(data=st.data())
def test_cli_argument_rejected_or_literal(arena, cli_site, data):
    cases = _cli_cases(cli_site, arena.root)
    name, argv = data.draw(st.sampled_from(cases), label="argument")
    value = data.draw(hostile_text(arena.marker).filter(lambda v: "\x00" not in v), label="value")
    TRIED["cli"] += 1
    args = [a.replace("{v}", value) for a in argv]
    if name == "render -o":
        assume(os.path.normpath(args[-1]).startswith(str(arena.root / "r")))
    code, stdout, stderr = run_cli(*args, "--recipes", str(arena.recipes)) if argv[0] in (
        "plan", "apply", "verify", "status") else run_cli(*args)
    _clean(code, stdout, stderr)
    _no_marker(arena)
    if name == "render -o" and code == 0:
        assert Path(args[-1]).is_dir(), args[-1]  # the literal directory, nothing else
        shutil.rmtree(arena.root / "r", ignore_errors=True)
    elif value.startswith("-") and code == 0:
        assert "usage:" in stdout  # an option-like value is an option to argparse (--help): nothing ran
    elif name.startswith("lab up"):
        assert code == 2  # refused before any machine is built
    else:
        assert code == 2, (name, value, stdout[-1500:], stderr[-1500:])


SUBPROCESS_CASES = [
    ["plan", "-c", "$(touch {m})"],
    ["apply", "-c", "{site}", "--yes", "--only", "x;touch {m}"],
    ["apply", "-c", "{site}", "--yes", "--from", "`touch {m}`"],
    ["render", "-c", "../../../{m}/../site.toml", "-o", "/tmp/x"],
    ["status", "-c", "{site}\ntouch {m}"],
    ["add-node", "-c", "{site}", "node1; touch {m}", "--yes"],
    ["lab", "status", "--name", "x'; touch {m}; '"],
    ["lab", "up", "--name", "$(touch {m})"],
    ["plan", "-c", "{site}", "--bogus-flag"],
]


@pytest.mark.parametrize("argv", SUBPROCESS_CASES, ids=lambda a: " ".join(a)[:40])
def test_cli_subprocess(arena, cli_site, argv):
    args = [a.format(m=arena.marker, site=cli_site) for a in argv]
    res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)
    _clean(res.returncode, res.stdout, res.stderr)
    _no_marker(arena)
    assert res.returncode == 2, res.stdout + res.stderr


def test_counts(record_property):
    """Reports how many hostile inputs the properties above tried in this session."""
    record_property("hostile_inputs_tried", dict(TRIED))
    print(f"\nhostile inputs tried: {TRIED} over {len(FIELDS)} site fields")
