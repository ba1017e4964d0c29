"""The whole swarm-mode track on a lab of 1 hub + 2 nodes + 1 spare (the session's shared swarm lab,
tests/swarm_lab.py), for real, from fresh machines (no Docker) or from where test_swarm_core left
them: every step to the end-to-end check, a converged re-apply, verify,
the OAuth redirect check with GitHub and a fake client id, add-node on the spare, teardown,
and a fresh apply afterwards, killed once at a random moment and resumed. Secrets must appear in no output and no journal line.
Wall times are printed (pytest -s shows them).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import pytest

from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(5400)]




def timed(label: str, *args: str) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    res = hubwizard(*args)
    print(f"\n[time] {label}: {time.monotonic() - t0:.0f} s (exit {res.returncode})")
    return res


def ssh(lab: dict, host: str, command: str) -> subprocess.CompletedProcess:
    ip = lab["record"]["machines"][host]["ip"]
    return subprocess.run(
        ["ssh", "-i", lab["record"]["key"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={lab['record']['known_hosts']}", f"root@{ip}", command],
        capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def lab(swarm_lab):
    """The session's shared swarm lab: fresh machines, or where test_swarm_core left them."""
    swarm_lab.fresh = False
    return {"site": swarm_lab.site, "work": swarm_lab.work, "record": swarm_lab.record, "name": swarm_lab.name,
            "journal": swarm_lab.journal}


def _secrets(lab) -> list[str]:
    import tomllib

    values = tomllib.loads(lab["site"].with_name("site.secrets.toml").read_text())
    return [v for v in values.values() if v]


def _no_secret_in(lab, *texts: str) -> None:
    journal = lab["journal"]
    everything = "\n".join([*texts, journal.read_text() if journal.exists() else ""])
    for value in _secrets(lab):
        assert value not in everything


def _failed_checks(res: subprocess.CompletedProcess) -> str:
    """What a failed `verify --json` says went wrong: its failed checks, not the JSON's tail."""
    try:
        checks = json.loads(res.stdout)["checks"]
    except (ValueError, KeyError):
        return res.stdout[-4000:] + res.stderr
    failed = [f"{c['step']} {c['host']}: {c['name']}: {c['detail']}" for c in checks if not c["ok"]]
    return "\n".join(failed or ["(no failed check; exit " + str(res.returncode) + ")"]) + "\n" + res.stderr[-2000:]


def test_full_apply_to_the_end_to_end_check(lab):
    res = timed("full apply from fresh machines", "apply", "-c", str(lab["site"]), "--yes")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    for step in ("registry", "hub-image", "prepull", "hub-service", "https", "oauth", "culler", "e2e"):
        assert f"== {step}:" in res.stdout
    assert "FAIL " not in res.stdout
    secrets = _secrets(lab)
    assert any(len(v) == 64 for v in secrets), "hub_api_token kept in the secrets file"
    _no_secret_in(lab, res.stdout, res.stderr)


def test_second_apply_changes_nothing(lab):
    res = timed("converged re-apply", "apply", "-c", str(lab["site"]), "--yes", "--json")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    doc = json.loads(res.stdout)
    changed = [(s["id"], h, r["status"]) for s in doc["steps"] for h, r in s["hosts"].items()
               if r["status"] not in ("unchanged", "skipped")]
    assert not changed


def test_verify_passes_one_line_per_check_and_host(lab):
    res = timed("verify", "verify", "-c", str(lab["site"]))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    lines = res.stdout.splitlines()
    for host in ("hub", "node1", "node2"):
        assert any(line.split()[:2] == ["pass", host] and "images present" in line for line in lines)
    for check in ("TLS handshake to the domain", "hub API lists idle-culler",
                  "spawns on a worker and answers through HTTPS", "port 8000 of the hub is not reachable"):
        assert any(check in line and line.split()[0] == "pass" for line in lines), check
    _no_secret_in(lab, res.stdout, res.stderr)


def test_hub_port_8000_is_not_public(lab):
    hub_ip = lab["record"]["machines"]["hub"]["ip"]
    from_node = ssh(lab, "node1", f"timeout 4 bash -c 'exec 3<>/dev/tcp/{hub_ip}/8000'")
    assert from_node.returncode != 0
    on_hub = ssh(lab, "hub", "curl -fsS -m 5 http://127.0.0.1:8000/hub/api")
    assert '"version"' in on_hub.stdout


def test_oauth_redirect_with_github_and_a_fake_client_id(lab):
    """A copy of the site with provider github: rebuild, re-create the hub service, check the
    redirect (only the Location header is read; nothing is sent to GitHub), then go back."""
    copy_dir = lab["work"] / "github"
    copy_dir.mkdir(exist_ok=True)
    site = copy_dir / "site.toml"
    # [oauth] is the lab site's last section (the lab's OpenID provider, or dummy with --dummy-login)
    site.write_text(lab["site"].read_text().split("[oauth]")[0]
                    + '[oauth]\nprovider = "github"\nclient_id = "Iv1.hubwizardfake"\n')
    kept = [line for line in lab["site"].with_name("site.secrets.toml").read_text().splitlines()
            if not line.startswith("oauth_client_secret")]
    secrets = "\n".join(kept) + '\noauth_client_secret = "fake-secret"\n'
    (copy_dir / "site.secrets.toml").write_text(secrets)
    (copy_dir / "site.secrets.toml").chmod(0o600)
    try:
        res = timed("apply with github (from hub-image)", "apply", "-c", str(site), "--yes", "--from", "hub-image")
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr
        assert "fake-secret" not in res.stdout + res.stderr
        res = hubwizard("verify", "-c", str(site), "--json")
        assert res.returncode == 0, _failed_checks(res)
        oauth = [c for c in json.loads(res.stdout)["checks"] if c["step"] == "oauth"]
        assert oauth and all(c["ok"] and not c["skipped"] for c in oauth), oauth
        assert any("login redirects to https://github.com/login/oauth/authorize with client_id Iv1.hubwizardfake"
                   " and callback https://hub.lab.test/hub/oauth_callback" in c["detail"] for c in oauth), oauth
        assert "fake-secret" not in res.stdout
    finally:
        back = timed("apply with dummy again", "apply", "-c", str(lab["site"]), "--yes", "--from", "hub-image")
        assert back.returncode == 0, back.stdout[-4000:] + back.stderr


def test_add_node_then_teardown_then_fresh_apply(lab):
    site = str(lab["site"])
    res = timed("add-node spare1", "add-node", "-c", site, "spare1", "--yes")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    assert "spare = true" not in lab["site"].read_text()
    assert "Ready as worker" in res.stdout
    res = hubwizard("verify", "-c", site)
    assert res.returncode == 0, res.stdout[-4000:]
    assert any(line.split()[:2] == ["pass", "spare1"] for line in res.stdout.splitlines())

    ssh(lab, "hub", "echo keep > /var/nfs/hubwizard-teardown-keeps-me")
    refused = hubwizard("teardown", "-c", site)  # no TTY, no --yes
    assert refused.returncode == 2
    res = timed("teardown", "teardown", "-c", site, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    for host in ("hub", "node1", "node2", "spare1"):
        assert f"{host:<10} left the swarm" in res.stdout
        state = ssh(lab, host, "docker info --format '{{.Swarm.LocalNodeState}}'").stdout.strip()
        assert state == "inactive", (host, state)
    hub = ssh(lab, "hub", "docker service ls -q | wc -l; ls /etc/nginx/sites-enabled; "
                          "cat /var/nfs/hubwizard-teardown-keeps-me").stdout.split()
    assert hub[0] == "0" and "jupyterhub" not in hub and hub[-1] == "keep"

    # the fresh apply is killed once at a random moment (a Ctrl-C, a dropped laptop), then resumed
    from tests.reliability.crash import kill_apply_at, read_journal

    delay = random.Random(os.environ.get("HUBWIZARD_RELIABILITY_SEED")).uniform(5, 60)
    killed = kill_apply_at(lab["site"], delay, recipes=None)
    records, last, problem = read_journal(lab["journal"])
    print(f"\nfresh apply after teardown killed at {delay:.0f} s (killed={killed}, last record {last!r})")
    assert not problem, problem
    res = timed("fresh apply after teardown, resumed", "apply", "-c", site, "--yes")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr
    assert "pass  hub        a test user's server spawns on a worker" in res.stdout
