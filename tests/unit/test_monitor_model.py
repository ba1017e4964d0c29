"""The monitor model's parsing: Docker API 1.41 shapes (tests/tui/fixtures.py) to rows."""

from __future__ import annotations

from hubwizard import monitor
from tests.tui.fixtures import NODES, SERVICES, TASKS


def test_rows_from_api_lists():
    snap = monitor.build_snapshot(NODES, SERVICES, TASKS)
    assert [(n.hostname, n.manager, n.availability) for n in snap.nodes] == [
        ("hub", "Leader", "active"), ("node1", "", "active"), ("node2", "", "drain")]
    assert monitor.node_cells(snap.nodes[0])[-2:] == ("2", "8.0 GiB")
    by_name = {s.name: s for s in snap.services}
    assert (by_name["jupyter-bob"].running, by_name["jupyter-bob"].desired) == (0, 1)
    assert by_name["jupyterhub"].image == "172.21.0.2:5000/jupyterhub-hub:latest"  # digest dropped
    failed = next(t for t in snap.tasks if t.id == "t3")
    assert (failed.node, failed.service, failed.error) == ("node1", "jupyter-bob", "No such image: lab/singleuser:latest")


def test_global_service_desired_counts_tasks():
    services = [{"ID": "g", "Spec": {"Name": "agent", "Mode": {"Global": {}}}}]
    tasks = [{"ID": f"t{i}", "ServiceID": "g", "NodeID": n["ID"], "DesiredState": "running",
              "Status": {"State": "running"}} for i, n in enumerate(NODES)]
    snap = monitor.build_snapshot(NODES, services, tasks)
    assert (snap.services[0].mode, snap.services[0].running, snap.services[0].desired) == ("global", 3, 3)


def test_log_line_names_its_node():
    line = ("2026-11-22T02:00:01.123456789Z com.docker.swarm.node.id=n2node1000000,com.docker.swarm.service.id=s2,"
            "com.docker.swarm.task.id=abcdefabcdef1234 [I 02:00:01] JupyterHub app:1 starting")
    got = monitor.parse_log_line(line, {"n2node1000000": "node1"})
    assert (got.node, got.task, got.time) == ("node1", "abcdefabcdef", "2026-11-22 02:00:01")
    assert got.text == "[I 02:00:01] JupyterHub app:1 starting"


def test_hub_users_both_shapes():
    flat = '[{"name": "bob", "admin": false, "servers": {"": {"ready": true}}, "last_activity": null}]'
    paged = '{"items": [{"name": "al", "admin": true, "servers": {}}], "_pagination": {}}'
    assert monitor.user_cells(monitor.parse_hub_users(flat)[0]) == ("bob", "", "default: ready", "")
    assert monitor.parse_hub_users(paged)[0].admin


def test_filter_needs_every_word():
    assert monitor.matches(("jupyter-bob", "node1", "rejected"), "bob REJ")
    assert not monitor.matches(("jupyter-bob", "node1", "rejected"), "bob node2")


def test_node_down_event_is_a_warning():
    ev = monitor.parse_event({"Type": "node", "Action": "update", "Actor": {"ID": "n3", "Attributes": {
        "state.new": "down"}}, "timeNano": 1_795_000_000_000_000_000}, {"n3": "node2"})
    assert ev.warning and ev.name == "node2"
