"""What the VM-lab test modules share: ssh to a VM, apply one step, the hub's REST API, a user's server.

Why a module of its own: test_vm_lab and test_vm_nfs_host drive their labs the same way (the
swarm-mode steps one by one, then a user's server started and stopped through the hub's API
with the check's token), and the down check is the same for every VM lab.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from hubwizard.lab import vm, vmnet
from tests.vm.conftest import hubwizard

# The swarm-mode track in the order of recipes/, up to the hub service: the images come from the
# lab's registry container on this machine (vmregistry); the hub builds only its own thin layers.
STEPS = ("preflight", "docker", "swarm-init", "swarm-join", "network", "storage", "nfs-guard", "storage-clients", "quotas",
         "registry", "hub-image", "prepull", "hub-service")


def on(lab: dict, host: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return vm.ssh(lab["record"], host, command, timeout=timeout)


def apply_step(lab: dict, step: str) -> str:
    done = hubwizard("apply", "-c", str(lab["site"]), "--yes", "--only", step, timeout=1800)
    assert done.returncode == 0, f"apply --only {step}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    return done.stdout


HUB_API = """
import json, sys, urllib.error, urllib.request
given = json.load(sys.stdin)
body = None if given["body"] is None else json.dumps(given["body"]).encode()
req = urllib.request.Request("http://127.0.0.1:8000" + sys.argv[2], data=body, method=sys.argv[1],
                             headers={"Authorization": "token " + given["token"], "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=60) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read().decode()}))
except urllib.error.HTTPError as exc:
    print(json.dumps({"status": exc.code, "body": exc.read().decode(errors="replace")}))
"""
CHECK_USER = "hubwizardcheck"  # the one user the check's API token may create, start, reach and stop


def hub_api(lab: dict, method: str, path: str, body: object = None) -> tuple[int, str]:
    """One request to the hub (its port 8000 on the hub VM, through the proxy) with the check's
    token; token and body go over ssh's stdin, never on a command line."""
    token = tomllib.loads(Path(lab["site"]).with_suffix(".secrets.toml").read_text())["hub_api_token"]
    for _ in range(40):  # the proxy answers 503 or resets while the hub (re)starts
        command = f"python3 -c {shlex.quote(HUB_API)} {method} {shlex.quote(path)}"
        done = subprocess.run([*vm.ssh_args(lab["record"], "hub"), command],
                              input=json.dumps({"token": token, "body": body}), capture_output=True, text=True, timeout=180)
        if done.returncode == 0 and done.stdout.strip():
            reply = json.loads(done.stdout)
            if reply["status"] not in (502, 503):
                return reply["status"], reply["body"]
        time.sleep(5)
    raise AssertionError(f"hub API {method} {path}: {done.stdout[-500:]} {done.stderr[-500:]}")


def wait(what: str, probe: Callable[[], str | None], timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(5)
    raise AssertionError(f"{what}: not after {timeout:.0f} s")


def node_of_server(lab: dict) -> str | None:
    """The node running the check user's server task (Swarm's view on the hub), once running."""
    ps = on(lab, "hub", f"for s in $(docker service ls -q --filter name=jupyter-{CHECK_USER}); do "
                        "docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' $s; done")
    for line in ps.stdout.splitlines():
        if line.split()[1:2] == ["Running"]:
            return line.split()[0]
    return None


def start_server(lab: dict) -> str:
    """Start the check user's server, wait until the hub says ready; return the node it runs on."""
    status, body = hub_api(lab, "POST", f"/hub/api/users/{CHECK_USER}/server")
    assert status in (201, 202), f"{status} {body[:500]}"

    def ready() -> str | None:
        status, body = hub_api(lab, "GET", f"/hub/api/users/{CHECK_USER}")
        server = json.loads(body).get("servers", {}).get("") if status == 200 else None
        return "ready" if server and server.get("ready") else None

    wait("the check user's server ready", ready)
    node = wait("its Swarm task running", lambda: node_of_server(lab), timeout=120)
    print(f"{time.strftime('%T')} {CHECK_USER}'s server runs on {node}")
    return node


def stop_server(lab: dict) -> None:
    hub_api(lab, "DELETE", f"/hub/api/users/{CHECK_USER}/server")

    def stopped() -> str | None:
        status, body = hub_api(lab, "GET", f"/hub/api/users/{CHECK_USER}")
        return "stopped" if status == 200 and not json.loads(body).get("servers") else None

    wait("the check user's server stopped", stopped, timeout=300)


def quota_hard_kib(lab: dict, host: str, user: str) -> int | None:
    """The hard limit (KiB) of USER's project on HOST's storage path, as the product reads it back
    (the command and parser of verify's quota check: actions/swarm.py, actions/quota.py); None
    when USER has no project there."""
    from hubwizard.actions.quota import parse_report, project_name

    report = on(lab, host, f"xfs_quota -x -c 'report -p' {vm.STORAGE_PATH}")
    assert report.returncode == 0, report.stdout + report.stderr
    row = parse_report(report.stdout).get(project_name(user))
    return None if row is None else row.hard // 1024


def assert_down(name: str, pids: list[int]) -> None:
    """`lab down NAME` leaves no qemu of its PIDS, tap, bridge, VM files or registry container."""
    done = hubwizard("lab", "down", "--name", name, timeout=300)
    assert done.returncode == 0, done.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"qemu" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert vmnet.taps_of(name) == []
    assert not vmnet.exists(vmnet.bridge_name(name))
    assert not vm.present(name)
    import docker

    left = docker.from_env().containers.list(all=True, filters={"label": f"io.hubwizard.lab={name}"})
    assert left == [], "the VM lab's registry container is left"
