"""Fixed data for screen tests and screenshots: a small swarm as the monitor model parses it.

The raw dicts have the shape of Docker Engine API 1.41 answers (GET /nodes, /services, /tasks)
so they go through the same parsers as live data."""

from __future__ import annotations

from hubwizard import monitor

NODES = [
    {"ID": "n1hub00000000", "Spec": {"Role": "manager", "Availability": "active"},
     "Description": {"Hostname": "hub", "Engine": {"EngineVersion": "20.10.24+dfsg1"},
                     "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 8 * 2**30}},
     "Status": {"State": "ready", "Addr": "172.21.0.3"},
     "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "172.21.0.3:2377"}},
    {"ID": "n2node1000000", "Spec": {"Role": "worker", "Availability": "active"},
     "Description": {"Hostname": "node1", "Engine": {"EngineVersion": "20.10.24+dfsg1"},
                     "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 16 * 2**30}},
     "Status": {"State": "ready", "Addr": "172.21.0.4"}},
    {"ID": "n3node2000000", "Spec": {"Role": "worker", "Availability": "drain"},
     "Description": {"Hostname": "node2", "Engine": {"EngineVersion": "20.10.24+dfsg1"},
                     "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 16 * 2**30}},
     "Status": {"State": "down", "Addr": "172.21.0.5"}},
]


def _service(sid: str, name: str, image: str, replicas: int | None) -> dict:
    mode = {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
    return {"ID": sid, "UpdatedAt": "2026-11-22T02:10:00.123Z",
            "Spec": {"Name": name, "Mode": mode, "TaskTemplate": {"ContainerSpec": {"Image": image + "@sha256:" + "a" * 64}}}}


SERVICES = [
    _service("s1hub", "jupyterhub", "172.21.0.2:5000/jupyterhub-hub:latest", 1),
    _service("s2alice", "jupyter-alice", "172.21.0.2:5000/lab/singleuser:latest", 1),
    _service("s3bob", "jupyter-bob", "172.21.0.2:5000/lab/singleuser:latest", 1),
]


def _task(tid: str, sid: str, nid: str, state: str, desired: str = "running", err: str = "", slot: int = 1) -> dict:
    return {"ID": tid, "ServiceID": sid, "NodeID": nid, "Slot": slot, "DesiredState": desired,
            "UpdatedAt": "2026-11-22T02:11:00Z", "Status": {"State": state, "Err": err}}


TASKS = [
    _task("t1", "s1hub", "n1hub00000000", "running"),
    _task("t2", "s2alice", "n2node1000000", "running"),
    _task("t3", "s3bob", "n2node1000000", "rejected", "shutdown", "No such image: lab/singleuser:latest"),
    _task("t4", "s3bob", "n2node1000000", "preparing"),
]


def snapshot() -> monitor.Snapshot:
    snap = monitor.build_snapshot(NODES, SERVICES, TASKS)
    snap.users = [monitor.HubUser("alice", True, ("default: ready",), "2026-11-22T02:40:00"),
                  monitor.HubUser("bob", False, ("default: spawn",), "2026-11-22T02:41:00")]
    snap.hub_status = "2 users"
    snap.backup = "backup: 2026-11-22 01:40 UTC (1 h ago), 12.4 MiB, repo ok"
    snap.events = [monitor.EventRow(1795000000.0, "service", "update", "jupyter-bob", True),
                   monitor.EventRow(1794999990.0, "node", "update", "node2", True)]
    snap.api_calls = 4
    snap.fetched_at = 1795000000.0
    return snap


def static_source(snap: monitor.Snapshot) -> monitor.Source:
    """A Source answering from a fixed snapshot: screenshots and screen tests without a swarm."""
    return StaticSource(snap)


class StaticSource:
    """The monitor's Source over a fixed snapshot; actions are recorded in ``done``, not run."""

    def __init__(self, snap: monitor.Snapshot) -> None:
        self.snapshot = snap
        self.done: list[str] = []

    def fetch(self) -> monitor.Snapshot:
        return self.snapshot

    def tasks_of_node(self, node_id: str) -> list[monitor.TaskRow]:
        return [t for t in self.snapshot.tasks if t.node_id == node_id]

    def tasks_of_service(self, service_id: str) -> list[monitor.TaskRow]:
        return [t for t in self.snapshot.tasks if t.service_id == service_id]

    def logs(self, service_id: str, tail: int = 200) -> list[monitor.LogLine]:
        return [monitor.LogLine(t.node, t.id[:12], "2026-11-22 03:00:00", f"{t.service} says hello")
                for t in self.tasks_of_service(service_id)]

    def _did(self, what: str) -> str:
        self.done.append(what)
        return what

    def drain(self, node_id: str) -> str:
        return self._did(f"drain {node_id}")

    def activate(self, node_id: str) -> str:
        return self._did(f"activate {node_id}")

    def scale(self, service_id: str, replicas: int) -> str:
        return self._did(f"scale {service_id} {replicas}")

    def force_update(self, service_id: str) -> str:
        return self._did(f"force-update {service_id}")

    def remove(self, service_id: str) -> str:
        return self._did(f"remove {service_id}")


class ScriptedSource(StaticSource):
    """A swarm coming up, one Docker API answer at a time: ``advance()`` moves to the next of
    ``stages`` (raw GET /nodes, /services, /tasks lists); ``fetches`` counts refreshes."""

    def __init__(self, stages: list[tuple[list[dict], list[dict], list[dict]]]) -> None:
        super().__init__(monitor.build_snapshot(*stages[0]))
        self.stages, self.stage, self.fetches = stages, 0, 0

    def advance(self) -> None:
        self.stage = min(self.stage + 1, len(self.stages) - 1)
        self.snapshot = monitor.build_snapshot(*self.stages[self.stage])

    def fetch(self) -> monitor.Snapshot:
        self.fetches += 1
        snap = monitor.build_snapshot(*self.stages[self.stage])
        snap.api_calls = 4
        return snap


def swarm_coming_up() -> ScriptedSource:
    """The hub alone with its service starting (0/1), then node1 joined and the hub 1/1."""
    hub_starting = [_task("t1", "s1hub", "n1hub00000000", "preparing")]
    return ScriptedSource([(NODES[:1], SERVICES[:1], hub_starting), (NODES[:2], SERVICES[:1], TASKS[:1])])
