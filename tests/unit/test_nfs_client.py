"""Issue 13 items 5 and 7: a node that cannot mount NFS fails with the fix (only the container lab
says it openly), and the NFS test write leaves no file behind on the server."""

from __future__ import annotations

from typing import Any

from hubwizard.actions import hub_service, swarm
from hubwizard.core.events import discard
from hubwizard.core.render import Facts
from hubwizard.core.secrets import Secrets
from hubwizard.engine.calls import RunState, StepContext
from hubwizard.remote.transport import Result
from tests.unit.test_hub_actions import site


class Host:
    """A host's transport as the calls use it: records commands, answers by substring."""

    def __init__(self, name: str, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.name, self.answers, self.commands = name, answers or {}, []

    def run(self, command: str, **_: Any) -> Result:
        self.commands.append(command)
        code, out = next((v for k, v in self.answers.items() if k in command), (0, ""))
        return Result(self.name, command, code, out, "")


class Conns:
    def __init__(self, hosts: dict[str, Host]) -> None:
        self.hosts = hosts

    def get(self, name: str) -> Host:
        return self.hosts[name]


def _ctx(s, node: Host, hosts: dict[str, Host]) -> StepContext:
    return StepContext("storage-clients", s.host(node.name), node, s, Facts.offline(s), Secrets({}), RunState(),
                       discard, Conns(hosts), {}, "verify")  # type: ignore[arg-type]


def test_a_node_without_nfs_client_fails_with_host_cause_and_fix():
    s = site()
    node = Host("node1", {"nfs4": (1, "")})
    res = swarm.nfs_client(_ctx(s, node, {"node1": node}))
    assert not res.ok and not res.skipped
    assert "node1 cannot mount NFS" in res.message and "nfs4" in res.message and "nfs-common" in res.message
    assert hub_service.nodes_mount_nfs(_ctx(s, node, {})) is True  # no silent fallback to container homes


def test_a_node_with_nfs_client_passes():
    s = site()
    node = Host("node1")
    assert swarm.nfs_client(_ctx(s, node, {"node1": node})).ok


def test_only_the_lab_switch_keeps_homes_off_nfs_and_says_so():
    s = site("\n[storage]\nlab_without_nfs_client = true\n")
    node = Host("node1", {"nfs4": (1, "")})
    res = swarm.nfs_client(_ctx(s, node, {"node1": node}))
    assert res.ok and res.skipped and "cannot check here" in res.message and "NOT on NFS" in res.message
    assert node.commands == []
    assert hub_service.nodes_mount_nfs(_ctx(s, node, {})) is False


def test_test_write_removes_its_file_and_older_ones_even_when_it_fails():
    s = site()
    server, node = Host("hub", {"cat ": (1, "No such file")}), Host("node1")
    res = swarm.nfs_test_write(_ctx(s, node, {"hub": server, "node1": node}), folder=".hubwizard-test")
    assert not res.ok  # the read-back failed
    clean = [c for c in server.commands if c.startswith("rm -f ")]
    assert clean, server.commands
    for place in ("/var/nfs", "/var/nfs/.hubwizard-test"):
        assert f"{place}/.hubwizard-test-node1-*" in clean[-1] and f"{place}/.hubwizard-mount-node1" in clean[-1]
    assert "node2" not in clean[-1]  # another node's test, running at the same time, keeps its file
