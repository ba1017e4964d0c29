"""The classic track's high availability and clone recipe (issue 15 item 1, seed 000), on a lab
of its own (hub + node1 + spare1, docker.io): a second Consul server and a replica Swarm manager
on node1; the replica answering `docker -H NODE1:4000` when the hub's manager is stopped, and
verify naming the stopped one; then spare1 made a careless clone of node1 (its engine key and a
container of its own) and `hubwizard add-node` finding it, repairing it, and the node joining.

What is real: the engines, TLS and certificates, the managers' API on :4000 from both hosts,
the stop of the primary's container and the replica answering; the clone, its engine ID and
its repair. What is a stand-in (the swarm and consul images cannot be pulled here): Consul's
servers are static status pages (no Raft), and the managers elect their primary by polling
each other rather than through a Consul lock. verify says so ("ran on a stand-in")."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.classic_lab import ClassicLab, classic_site_text, ssh
from tests.integration.lab_fixture import running_lab
from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]
CLIENT = ("--tlsverify --tlscacert=/etc/docker/tls/client/ca.pem --tlscert=/etc/docker/tls/client/cert.pem "
          "--tlskey=/etc/docker/tls/client/key.pem")
STEPS = ("classic-engine-id", "classic-docker-tls", "classic-consul", "classic-consul-servers", "classic-consul-guard",
         "classic-manager", "classic-replica-manager", "classic-join", "classic-ha")


def _run(lab: ClassicLab, mode: str, only: tuple[str, ...] = STEPS):
    session = lab.session()
    engine = session.engine(lambda e: None)
    try:
        return engine.run(mode, steps=[s for s in session.steps if s.id in only])
    finally:
        engine.conns.close()


@pytest.fixture(scope="module")
def ha_lab() -> Iterator[ClassicLab]:
    """hub + node1 + spare1; the classic track's cluster steps applied with consul_servers = 2 and
    replica_manager = "node1" (the hub, NFS and autofs steps are other tests' business)."""
    folder = Path(tempfile.mkdtemp(prefix="hubwizard-classic-ha-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        up = stack.enter_context(running_lab(folder, with_docker=True, nodes=1, spares=1))
        site = folder / "classic-site.toml"
        site.write_text(classic_site_text(up.site_path.read_text()) + 'consul_servers = 2\nreplica_manager = "node1"\n')
        secrets = site.with_name("classic-site.secrets.toml")
        shutil.copy(up.site_path.with_name(up.site_path.stem + ".secrets.toml"), secrets)
        secrets.chmod(0o600)
        lab = ClassicLab(site, up.record)
        started = time.monotonic()
        summary = _run(lab, "apply")
        print(f"\napply of {len(STEPS)} classic steps with a replica: {time.monotonic() - started:.0f} s")
        failed = [r for r in summary.results if r.status in ("failed", "unreachable")]
        assert not failed, failed
        yield lab


def _manager(lab: ClassicLab, target: str, what: str) -> str:
    res = ssh(lab, "hub", f"timeout 30 docker -H tcp://{lab.ip(target)}:4000 {CLIENT} {what}", check=False)
    return res.stdout if res.ok else f"FAILED: {res.output[-300:]}"


def _role(lab: ClassicLab, target: str) -> str:
    from hubwizard.actions.classic_ha import status_pairs

    return status_pairs(_manager(lab, target, "info --format '{{json .SystemStatus}}'")).get("Role", "")


def _checks(summary, step: str) -> list:
    return [c for c in summary.checks if c.step == step]


def test_apply_runs_a_second_consul_server_and_a_replica_and_verify_passes(ha_lab):
    assert ssh(ha_lab, "node1", "docker inspect -f '{{.State.Running}}' consul swarm-manager").stdout.split() == \
        ["true", "true"]
    peers = ssh(ha_lab, "hub", f"curl -fsS http://{ha_lab.ip('node1')}:8500/v1/status/peers").stdout
    assert ha_lab.ip("hub") in peers and ha_lab.ip("node1") in peers
    summary = _run(ha_lab, "verify")
    for c in _checks(summary, "classic-ha"):
        print(f"{c.step} {c.host} {c.name}: {c.ok} {c.detail}")
    assert summary.exit_code == 0, [r for r in summary.results if r.status != "ok"]
    ha = _checks(summary, "classic-ha")
    assert len(ha) == 2 and all(c.ok for c in ha)
    assert all("ran on a stand-in" in c.detail for c in ha)
    assert _role(ha_lab, "hub") == "primary" and _role(ha_lab, "node1") == "replica"
    info = _manager(ha_lab, "node1", "info --format '{{json .SystemStatus}}'")
    assert f'["Primary","{ha_lab.ip("hub")}:4000"]' in info.replace(" ", ""), info
    again = _run(ha_lab, "apply")
    assert [r for r in again.results if r.status not in ("unchanged", "skipped")] == []


def test_the_replica_takes_over_when_the_primary_stops_and_verify_names_it(ha_lab):
    ssh(ha_lab, "hub", "docker stop swarm-manager")
    try:
        for _ in range(30):
            if _role(ha_lab, "node1") == "primary":
                break
            time.sleep(1)
        ps = _manager(ha_lab, "node1", "ps -a")
        print(f"\n$ docker -H NODE1:4000 ps -a (hub's manager stopped)\n{ps}")
        assert "CONTAINER ID" in ps and _role(ha_lab, "node1") == "primary"
        assert _manager(ha_lab, "hub", "ps").startswith("FAILED")
        summary = _run(ha_lab, "verify", ("classic-ha",))
        (result,) = summary.results
        print(f"verify: {result.message}\n{result.output_tail}\nfix: {result.fix}")
        assert result.status == "failed" and summary.exit_code == 1
        assert f"the swarm manager on hub ({ha_lab.ip('hub')}:4000) does not answer: " in result.output_tail
        assert "nil pointer" not in result.output_tail  # the connection error, not the template's complaint
        assert f"node1 ({ha_lab.ip('node1')}:4000) is primary now" in result.output_tail
        assert result.fix and "docker start swarm-manager" in result.fix
    finally:
        ssh(ha_lab, "hub", "docker start swarm-manager", check=False)
    for _ in range(30):  # back as a replica of node1: the primary stays where it moved
        if _role(ha_lab, "hub") == "replica":
            break
        time.sleep(1)
    assert _role(ha_lab, "hub") == "replica" and _role(ha_lab, "node1") == "primary"
    assert _run(ha_lab, "verify", ("classic-ha",)).exit_code == 0


def test_add_node_repairs_a_clone_of_node1_and_it_joins(ha_lab):
    from tests.integration.classic_lab import START_DOCKERD, clone_engine_key

    # a careless clone: a container of its own (what came with the disk) and node1's engine key
    ssh(ha_lab, "spare1", "tar -cf - --files-from /dev/null | docker import - hubwizard-clone-probe >/dev/null && "
        "docker create --name came-with-the-clone hubwizard-clone-probe true >/dev/null")
    clone_engine_key(ha_lab, "node1", "spare1")
    node1_id = ssh(ha_lab, "node1", "docker info --format '{{.ID}}'").stdout.strip()
    assert ssh(ha_lab, "spare1", "docker info --format '{{.ID}}'").stdout.strip() == node1_id
    started = time.monotonic()
    res = hubwizard("add-node", "-c", str(ha_lab.site_path), "spare1", "--yes")
    print(f"\nadd-node spare1 (a clone): {time.monotonic() - started:.0f} s, exit {res.returncode}\n"
          f"{res.stdout[:1500]}\n...\n{res.stdout[-1500:]}{res.stderr[-1000:]}")
    assert res.returncode == 0
    plan = res.stdout.split("\n== ", 1)[0]  # shown before the first step ran
    assert "cloned from node1's disk" in plan and "came-with-the-clone" in plan
    assert "rm -f /etc/docker/key.json /var/lib/docker/engine-id" in plan
    assert ssh(ha_lab, "spare1", "docker info --format '{{.ID}}'").stdout.strip() not in ("", node1_id)
    assert "came-with-the-clone" not in ssh(ha_lab, "spare1", "docker ps -a --format '{{.Names}}'").stdout
    assert "spare = true" not in ha_lab.site_path.read_text()
    # the managers learn of the new node on the next apply (the stand-ins' node list is static)
    assert _run(ha_lab, "apply", ("classic-manager", "classic-replica-manager")).exit_code == 0
    info = _manager(ha_lab, "hub", "info --format '{{json .SystemStatus}}'")
    assert f'" spare1","{ha_lab.ip("spare1")}:2376"' in info.replace(", ", ","), info
    ssh(ha_lab, "spare1", START_DOCKERD)  # idempotent: dockerd stays up
