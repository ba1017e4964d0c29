"""Site file validation: one clear message, exit 2, no traceback, no connection."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hubwizard.core.config import parse_site
from hubwizard.core.errors import ConfigError

GOOD = '''
[site]
name = "workshop"
domain = "hub.example.org"
email = "admin@example.org"

[[hosts]]
name = "hub"
address = "203.0.113.10"
role = "hub"

[[hosts]]
name = "node1"
address = "node1.internal"
role = "node"
jump = "hub"

[hub]
admin_users = ["alice"]

[oauth]
provider = "github"
client_id = "Iv1.0123456789abcdef"
'''


def cli(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site.toml"
    site.write_text(text)
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "plan", "-c", str(site), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_good_site_parses():
    site = parse_site(GOOD)
    assert site.hub_host.name == "hub" and [n.name for n in site.nodes] == ["node1"]
    assert site.site.track == "swarm-mode" and site.storage.path == "/var/nfs"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[site\nname=", "not valid TOML"),
        (GOOD.replace('address = "203.0.113.10"', 'address = 42'), "hosts[0].address = 42"),
        (GOOD.replace('role = "node"', 'role = "node"\nadress = "x"'), "hosts[1].adress = 'x': unknown key"),
        (GOOD.replace('role = "hub"', 'role = "node"'), 'exactly one host needs role = "hub"'),
        (GOOD.replace('jump = "hub"', 'jump = "nope"'), "jump = 'nope' is not a host"),
        (GOOD.replace('"hub.example.org"', '"hub.example.org; touch /tmp/x"'), "site.domain"),
        (GOOD + '\n[site2]\nx = 1\n', "site2: unknown key"),
        (GOOD + '\n[storage]\npath = "/var/../etc"\n', "must not contain '..'"),
        (GOOD.replace('[site]', '[site]\nsubnet = "0.0.0.0/0"'), "would open exports to everyone"),
    ],
)
def test_bad_site_is_one_clear_message(tmp_path, text, expected):
    res = cli(tmp_path, text)
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""


def test_bad_site_json_mode_prints_one_document(tmp_path):
    import json

    res = cli(tmp_path, GOOD.replace('role = "hub"', 'role = "boss"'), "--json")
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 2 and "hosts[0].role" in doc["message"]


@pytest.mark.parametrize("evil", ["a;touch /tmp/hw-pwn", "$(touch /tmp/hw-pwn)", "`id`", "a'b", 'a"b', "a\nb", "ünï"])
def test_hostile_names_rejected(evil):
    for field in ('address = "203.0.113.10"', 'name = "node1"', 'domain = "hub.example.org"'):
        key = field.split(" = ")[0]
        text = GOOD.replace(field, f"{key} = {evil!r}".replace("'", '"') if '"' not in evil else f"{key} = '{evil}'")
        with pytest.raises(ConfigError):
            parse_site(text)


def test_missing_site_file(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "status", "-c", str(tmp_path / "nope.toml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no such site file" in res.stderr and "hubwizard init" in res.stderr


def test_example_site_is_valid():
    from pathlib import Path

    from hubwizard.core.config import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "examples" / "site.toml")
    assert len(site.nodes) == 2 and site.nodes[0].jump == "hub"
