"""verify and a converged apply run steps at once (bench/README.md); the report must still read
like a sequential run, and a step with work to do must still run after the ones before it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import BASIC_RECIPES, write_site

HW = [sys.executable, "-m", "hubwizard.cli.main"]
ORDER = ["make-dir", "write-domain", "slow"]


def hw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HW, *args, "--recipes", str(BASIC_RECIPES)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def headers(out: str) -> list[str]:
    return re.findall(r"^== ([\w-]+):", out, re.M)


def test_reports_keep_step_order_and_a_mid_track_change_still_applies(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    assert hw("apply", "-c", str(site), "--yes").returncode == 0

    verify = hw("verify", "-c", str(site))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert headers(verify.stdout) == ORDER
    blocks = dict(zip(ORDER, re.split(r"^== [\w-]+:.*$", verify.stdout, flags=re.M)[1:], strict=True))
    for step, check in zip(ORDER, ("folder exists", "domain readback", "slow step finished"), strict=True):
        assert check in blocks[step]  # each step's checks are printed under its own header, in order

    (tmp_path / "work" / "hub" / "domain").unlink()  # only the middle step, on one host, drifted
    again = hw("apply", "-c", str(site), "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    steps = json.loads(again.stdout)["steps"]
    assert [s["id"] for s in steps] == ORDER
    status = {s["id"]: {h: v["status"] for h, v in s["hosts"].items()} for s in steps}
    assert status["make-dir"] == {"hub": "unchanged", "node1": "unchanged"}
    assert status["write-domain"] == {"hub": "changed", "node1": "unchanged"}
    assert status["slow"] == {"hub": "unchanged"}
    assert (tmp_path / "work" / "hub" / "domain").read_text() == "hub.example.org\n"
    assert (tmp_path / "work" / "slow.count").read_text().count("run") == 1  # never re-run
