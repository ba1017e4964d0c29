"""The reliability suites on a real lab (the session's shared swarm lab, tests/swarm_lab.py: 1 hub
+ 2 nodes, swarm-mode track): kill points in re-convergence (and in the first apply when this
module runs alone on fresh machines), faults on a node (dockerd stopped, another swarm), the
registry down, the NFS export's disk full, then the secret scan of every host and the exposure checks.

Marked lab: skipped cleanly when no Docker engine answers. When the track does not yet run
end to end, the module skips saying so (HUBWIZARD_RELIABILITY_STRICT=1 turns that into a failure).
Traffic goes only to the lab's own containers (addresses read from the lab's site file).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubwizard.core.render import HUB_SERVICE
from tests.reliability.crash import ROOT, kill_apply_at, read_journal, scale

pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]
# A killed apply's remote command (apt-get, docker build) goes on as an orphan on the host; the resume
# waits for it through the host lock (hubwizard.remote.hostlock; seen before it: `systemctl enable --now
# docker` failing while the orphaned apt-get still configured docker.io). So no pause is needed but
# the few seconds a person takes to re-run.
SETTLE = 3


def hw(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def _strict_skip(reason: str) -> None:
    if os.environ.get("HUBWIZARD_RELIABILITY_STRICT") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class LabRun:
    """The lab's site file, and what every run against it printed (scanned for secrets at the end)."""

    def __init__(self, site: Path, outputs: dict[str, str], name: str) -> None:
        self.site, self.outputs, self.name = site, outputs, name
        self.started = time.time()
        self.first_kill: tuple[float, bool, int] | None = None

    def apply(self, *extra: str) -> subprocess.CompletedProcess:
        res = hw("apply", "-c", str(self.site), "--yes", "--json", *extra)
        self.outputs[f"apply {len(self.outputs)}"] = res.stdout + res.stderr
        return res

    def verify(self) -> subprocess.CompletedProcess:
        res = hw("verify", "-c", str(self.site), "--json")
        self.outputs[f"verify {len(self.outputs)}"] = res.stdout + res.stderr
        return res

    def verified(self) -> str:
        """verify passes; if not, the failing checks (host, step, message, output tail) as the reason."""
        res = self.verify()
        return "" if res.returncode == 0 else f"verify exit {res.returncode}: {_failures(res)}"

    def sh(self, host: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A root shell inside a lab machine (the fault injector's hand, not the product's)."""
        return subprocess.run(["docker", "exec", f"hwlab-{self.name}-{host}", "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout)

    @property
    def journal(self) -> Path:
        return self.site.parent / ".hubwizard" / self.name / "journal.jsonl"

    @property
    def ips(self) -> dict[str, str]:
        """Lab machines' addresses, from the lab's own site file: the only addresses probed."""
        from hubwizard.core.config import load_site

        return {h.name: h.address for h in load_site(self.site).hosts}


@pytest.fixture(scope="module")
def lab_run(request):
    """The session's shared swarm lab (tests/swarm_lab.py). Fresh (this module run alone): the
    first apply is killed once at a random moment, and the resume must finish and verify.
    Already used: it is converged (and verified) first.
    HUBWIZARD_RELIABILITY_LAB_SITE=SITE runs the suite on a lab "rel" that is already up (and leaves it up)."""
    from hubwizard.core.steps import load_steps

    if not {"docker", "swarm-init", "swarm-join", "storage", "registry", "hub-image"} <= {
            s.id for s in load_steps("swarm-mode")}:
        pytest.skip("the swarm-mode track's steps are not all there yet")
    existing = os.environ.get("HUBWIZARD_RELIABILITY_LAB_SITE")
    if existing:
        return _first_apply(LabRun(Path(existing), {}, "rel"))
    lab = request.getfixturevalue("swarm_lab")
    run = LabRun(lab.site, lab.outputs, lab.name)
    if lab.take_fresh():
        return _first_apply(run)
    res = run.apply()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert not (why := run.verified()), why
    return run


def _first_apply(run: LabRun) -> LabRun:
    delay = random.Random(os.environ.get("HUBWIZARD_RELIABILITY_SEED")).uniform(20, 180)
    killed = kill_apply_at(run.site, delay, recipes=None)
    time.sleep(SETTLE)
    count, _, problem = read_journal(run.journal)
    assert not problem, problem
    res = run.apply()
    if res.returncode != 0:
        _strict_skip(f"the swarm-mode track does not run end to end in the lab yet:\n{res.stdout[-3000:]}")
    assert not (why := run.verified()), why
    run.first_kill = (delay, killed, count)
    return run


def _failures(res: subprocess.CompletedProcess) -> str:
    """Every failed or unreachable entry of a --json run, one line each; else the output's tail."""
    try:
        doc = json.loads(res.stdout)
        lines = [f"{step['id']} on {entry.get('host')}: {entry['status']}: {entry.get('message')} | "
                 f"{(entry.get('output_tail') or '')[-600:]} | fix: {entry.get('fix')}"
                 for step in doc["steps"] for entry in step["hosts"].values()
                 if entry["status"] in ("failed", "unreachable")]
    except (ValueError, KeyError, TypeError):
        lines = []
    return "\n".join(lines) or (res.stdout[-3000:] + res.stderr[-1500:])


def _failure(doc: dict) -> tuple[str, dict]:
    for step in doc["steps"]:
        for entry in step["hosts"].values():
            if entry["status"] in ("failed", "unreachable"):
                return step["id"], entry
    raise AssertionError(f"no failure in {json.dumps(doc)[:3000]}")


def _named_or_healed(res: subprocess.CompletedProcess, host: str, steps: set[str]) -> str:
    """A fault either heals on its own (the step re-converges: exit 0) or fails naming host, step,
    cause and fix. Returns what happened, for the record."""
    doc = json.loads(res.stdout)
    if res.returncode == 0:
        return "healed"
    step, entry = _failure(doc)
    assert entry["host"] == host and step in steps, (step, entry)
    assert entry["message"] and (entry["output_tail"] or entry["status"] == "unreachable"), entry
    assert entry["fix"], f"no fix for {step} on {host}: {entry}"
    return f"named: {step} on {host}: {entry['message']} / fix: {entry['fix']}"


def test_first_apply_survived_a_kill(lab_run):
    if lab_run.first_kill is None:
        pytest.skip("the shared lab's first apply ran before this module (test_swarm_full kills its fresh "
                    "apply after teardown instead); run this module alone for a kill in a first apply")
    delay, killed, records = lab_run.first_kill
    print(f"\nlab kill point 1: {delay:.0f}s into the first apply (killed={killed}, {records} journal records)")


def test_kill_points_during_reconvergence(lab_run):
    """A node leaves the swarm, the hub service is removed: re-apply is killed early, resumed, verified."""
    survived, delays = 0, []
    for i in range(2 * scale()):
        delays.append(_kill_reconvergence(lab_run, random.Random(i).uniform(3, 40)))
        time.sleep(SETTLE)
        res = lab_run.apply()
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert not (why := lab_run.verified()), why
        survived += 1
    print(f"\nlab kill points during re-convergence survived: {survived} (killed at {delays} s)")


def _kill_reconvergence(lab_run: LabRun, delay: float) -> float:
    """Break the swarm, start the re-apply and kill it after ``delay`` s. How long a re-convergence
    takes depends on the machine (seen: over 34 s loaded, under it quiet), so a run that finished
    before the kill is broken again and killed at half the delay. Returns the delay that landed."""
    while True:
        lab_run.sh("node1", "docker swarm leave --force")
        lab_run.sh("hub", f"docker service rm {HUB_SERVICE} >/dev/null 2>&1 || true")
        if kill_apply_at(lab_run.site, delay, recipes=None):
            return round(delay, 1)
        assert delay > 1, "the re-convergence ended within a second: nothing to kill"
        delay /= 2


def test_fault_node_dockerd_stopped(lab_run):
    """dockerd dies after the docker step: the steps after it name node1 and the fix; a full apply
    (from the docker step) starts it again."""
    lab_run.sh("node1", "systemctl stop docker.socket docker")
    try:
        res = hw("apply", "-c", str(lab_run.site), "--yes", "--json", "--from", "swarm-join")
        lab_run.outputs["apply --from swarm-join, dockerd stopped"] = res.stdout + res.stderr
        outcome = _named_or_healed(res, "node1", {"swarm-join", "storage-clients", "registry", "prepull"})
        print(f"\ndockerd stopped: {outcome}")
        assert res.returncode != 0 and "docker" in _failure(json.loads(res.stdout))[1]["fix"].lower()
    finally:
        res = lab_run.apply()  # the docker step's check fails on node1, its apply starts dockerd
    assert res.returncode == 0, res.stdout[-3000:]
    assert not (why := lab_run.verified()), why


def test_fault_node_in_another_swarm(lab_run):
    ip = lab_run.ips["node1"]
    lab_run.sh("node1", f"docker swarm leave --force; docker swarm init --advertise-addr {ip}")
    try:
        res = lab_run.apply()
        assert res.returncode != 0, "a node of another swarm must not be taken over silently"
        print(f"\nnode in another swarm: {_named_or_healed(res, 'node1', {'swarm-join'})}")
    finally:
        lab_run.sh("node1", "docker swarm leave --force")
    res = lab_run.apply()
    assert res.returncode == 0, _failures(res)
    assert not (why := lab_run.verified()), why


def test_fault_registry_down(lab_run):
    registry = f"hwlab-{lab_run.name}-registry"
    subprocess.run(["docker", "stop", registry], capture_output=True, timeout=120)
    try:
        res = lab_run.apply()
        print(f"\nregistry down: {_named_or_healed(res, 'hub', {'registry', 'hub-image', 'prepull', 'hub-service'})}")
        assert res.returncode != 0
    finally:
        subprocess.run(["docker", "start", registry], capture_output=True, timeout=120)
        time.sleep(2)
    res = lab_run.apply()
    assert res.returncode == 0, _failures(res)
    assert not (why := lab_run.verified()), why


def test_fault_nfs_disk_full(lab_run):
    from hubwizard.core.config import load_site

    site = load_site(lab_run.site)
    nfs, path = site.nfs_host.name, site.storage.path
    fill = f"{path}/.rel-fill"
    # the export's filesystem really full: a small tmpfs on the export path, filled to the last byte
    mounted = lab_run.sh(nfs, f"mount -t tmpfs -o size=256k tmpfs {path} && (dd if=/dev/zero of={fill} bs=4k "
                              f"2>/dev/null; true)")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem on {path} in the lab: {mounted.stderr}")
    try:
        res = hw("verify", "-c", str(lab_run.site), "--json")
        lab_run.outputs["verify disk full"] = res.stdout
        checks = json.loads(res.stdout).get("checks", [])
        bad = [c for c in checks if not c["ok"] and not c["skipped"]]
        print(f"\nNFS disk full: {[(c['step'], c['host'], c['name'], c['detail']) for c in bad]}")
        assert res.returncode == 1 and bad, res.stdout[-3000:]
        assert any(w in (c["detail"] or "").lower() for c in bad for w in ("space", "disk", "free")), bad
    finally:
        lab_run.sh(nfs, f"umount {path}")
    assert not (why := lab_run.verified()), why


def test_secrets_nowhere_after_all_runs(lab_run):
    """Last but one: every host, the journal and every output of the runs above (passing and failing)."""
    from hubwizard.cli.secretscan import scan_site

    tokens = {}
    for role in ("worker", "manager"):
        res = lab_run.sh("hub", f"docker swarm join-token -q {role}")
        if res.returncode == 0 and res.stdout.strip():
            tokens[f"join token ({role})"] = res.stdout.strip()
    report = scan_site(lab_run.site, hosts=True, outputs=lab_run.outputs, extra=tokens, since=lab_run.started)
    print("\n" + "\n".join(["secret scan:", *map(str, report.findings), *report.excepted, *report.notes]))
    assert report.clean, [str(f) for f in report.findings]


def _open_ports(ip: str, ports: list[int]) -> list[int]:
    found = []
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((ip, port)) == 0:
                found.append(port)
    return found


def _answers_docker_api(ip: str, port: int) -> bool:
    """A plain-HTTP GET /_ping that a Docker API would answer with OK."""
    try:
        with socket.create_connection((ip, port), timeout=3) as s:
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: x\r\n\r\n")
            data = s.recv(4096)
    except OSError:
        return False
    return b"Api-Version" in data or data.endswith(b"OK")


def test_exposure(lab_run):
    """From this machine (outside the cluster's overlay), only lab addresses: no Docker API without
    TLS, no JupyterHub/proxy port, and exports never open to everyone."""
    ports = [*range(1, 1025), 2375, 2376, 4000, 4243, 5000, 2049, 8000, 8001, 8080, 8081, 8500, 9000]
    report = {}
    for host, ip in lab_run.ips.items():
        if host in ("registry", "acme"):
            continue
        open_ports = _open_ports(ip, ports)
        report[host] = open_ports
        assert not [p for p in open_ports if _answers_docker_api(ip, p)], f"{host}: Docker API without TLS"
        assert 8000 not in open_ports and 8001 not in open_ports and 8081 not in open_ports, (host, open_ports)
        assert 2375 not in open_ports, (host, open_ports)
    print(f"\nopen ports seen from the host: {report}")
    from hubwizard.core.config import load_site

    site = load_site(lab_run.site)
    conf = lab_run.sh(site.nfs_host.name, "cat /etc/ganesha/ganesha.conf 2>/dev/null").stdout
    kernel = lab_run.sh(site.nfs_host.name, "cat /etc/exports /etc/exports.d/* 2>/dev/null").stdout
    assert conf.strip() or kernel.strip(), "no NFS export configuration found"
    assert_ganesha_scoped(conf)
    for line in kernel.splitlines():
        text = line.split("#")[0]
        assert "0.0.0.0/0" not in text and " *(" not in text and not text.strip().startswith("*"), line


def assert_ganesha_scoped(conf: str) -> None:
    """Access only inside CLIENT blocks, whose Clients never include everyone."""
    blocks: list[str] = []
    for raw in conf.splitlines():
        line = raw.split("#")[0].strip()
        if line.endswith("{"):
            blocks.append(line[:-1].strip().upper())
        elif line == "}":
            blocks.pop()
        elif "=" in line:
            key, value = (x.strip().rstrip(";").strip() for x in line.split("=", 1))
            if key.lower() == "access_type" and "CLIENT" not in blocks:
                assert value.lower() == "none", f"access {value} for every client in {blocks}: {raw}"
            if key.lower() == "clients":
                assert "*" not in value and "0.0.0.0/0" not in value, raw


def test_ganesha_scope_check_catches_open_exports():
    """The exposure check itself, on configurations that must fail it."""
    scoped = "EXPORT {\n Access_Type = None;\n CLIENT {\n Clients = 10.0.0.0/24;\n Access_Type = RW;\n }\n}\n"
    assert_ganesha_scoped(scoped)
    for bad in (scoped.replace("10.0.0.0/24", "*"), scoped.replace(" Access_Type = None;", " Access_Type = RW;")):
        with pytest.raises(AssertionError):
            assert_ganesha_scoped(bad)
