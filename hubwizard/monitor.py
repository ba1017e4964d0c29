"""The cluster monitor's model: one snapshot of a swarm, and the actions an admin takes on it.

Why a model apart from the screen: the TUI only renders what this module fetched, the
benchmark and the tests drive it without Textual, and its cost stays fixed: a refresh is
``nodes``, ``services``, ``tasks`` and ``events``: four Docker API calls whatever the number of
services (the per-service replica counts come from the one task list, not one call each).
The last backup is read from the small status file each backup run leaves (one `cat` over
SSH per backup host, at most once a minute), never by asking restic.
Drill-downs (the tasks of one node or service) and logs are fetched only when asked for.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from hubwizard.core.units import human_bytes

if TYPE_CHECKING:
    from hubwizard.actions.backup import RunStatus
    from hubwizard.core.config import Site
    from hubwizard.core.secrets import Secrets
    from hubwizard.remote.connections import Connections

HUB_API = "http://127.0.0.1:8000/hub/api"  # the hub service publishes the proxy's :8000 on the hub host


@dataclass(frozen=True)
class NodeRow:
    id: str
    hostname: str
    role: str
    manager: str  # Leader | Reachable | Unreachable | "" for workers
    availability: str
    state: str
    engine: str
    cpus: float
    memory: int  # bytes
    address: str = ""


@dataclass(frozen=True)
class ServiceRow:
    id: str
    name: str
    mode: str  # replicated | global
    running: int
    desired: int
    image: str
    updated: str  # ISO time of the last spec update
    update_state: str = ""


@dataclass(frozen=True)
class TaskRow:
    id: str
    service: str
    service_id: str
    slot: int | None
    node: str
    node_id: str
    desired: str
    current: str
    error: str
    updated: str


@dataclass(frozen=True)
class HubUser:
    name: str
    admin: bool
    servers: tuple[str, ...]  # "name: ready|pending" per server
    last_activity: str


@dataclass(frozen=True)
class EventRow:
    time: float
    type: str
    action: str
    name: str
    warning: bool


@dataclass(frozen=True)
class LogLine:
    node: str
    task: str
    time: str
    text: str


@dataclass
class Snapshot:
    """Everything one refresh shows; ``error`` says why the swarm could not be read."""

    nodes: list[NodeRow] = field(default_factory=list)
    services: list[ServiceRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    users: list[HubUser] | None = None  # None: the hub API could not be asked
    hub_status: str = "hub API not reachable"
    backup: str = ""  # one line on the last backup ("" when [backups] is off)
    error: str = ""
    api_calls: int = 0
    fetched_at: float = 0.0
    seconds: float = 0.0


class Source(Protocol):
    """What the monitor screen needs; MonitorModel is the real one."""

    def fetch(self) -> Snapshot: ...
    def tasks_of_node(self, node_id: str) -> list[TaskRow]: ...
    def tasks_of_service(self, service_id: str) -> list[TaskRow]: ...
    def logs(self, service_id: str, tail: int = 200) -> list[LogLine]: ...
    def drain(self, node_id: str) -> str: ...
    def activate(self, node_id: str) -> str: ...
    def scale(self, service_id: str, replicas: int) -> str: ...
    def force_update(self, service_id: str) -> str: ...
    def remove(self, service_id: str) -> str: ...


# ------------------------------------------------------------------- parsing (pure)


def parse_node(raw: dict[str, Any]) -> NodeRow:
    """One entry of GET /nodes as a row; a manager says Leader or its reachability."""
    desc, spec, status = raw.get("Description", {}), raw.get("Spec", {}), raw.get("Status", {})
    ms = raw.get("ManagerStatus") or {}
    manager = "Leader" if ms.get("Leader") else (ms.get("Reachability", "") or "").capitalize()
    res = desc.get("Resources", {})
    return NodeRow(
        id=raw.get("ID", ""),
        hostname=desc.get("Hostname", ""),
        role=spec.get("Role", ""),
        manager=manager,
        availability=spec.get("Availability", ""),
        state=status.get("State", ""),
        engine=desc.get("Engine", {}).get("EngineVersion", ""),
        cpus=res.get("NanoCPUs", 0) / 1e9,
        memory=int(res.get("MemoryBytes", 0)),
        address=status.get("Addr", ""),
    )


def _image(ref: str) -> str:
    return ref.split("@sha256:")[0]


def parse_service(raw: dict[str, Any], running: int, global_desired: int) -> ServiceRow:
    """One entry of GET /services; ``running`` comes from the task list."""
    spec = raw.get("Spec", {})
    mode = spec.get("Mode", {})
    if "Global" in mode:
        kind, desired = "global", global_desired
    else:
        kind, desired = "replicated", int(mode.get("Replicated", {}).get("Replicas", 0))
    image = spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", "")
    return ServiceRow(
        id=raw.get("ID", ""),
        name=spec.get("Name", ""),
        mode=kind,
        running=running,
        desired=desired,
        image=_image(image),
        updated=raw.get("UpdatedAt", "")[:19].replace("T", " "),
        update_state=(raw.get("UpdateStatus") or {}).get("State", ""),
    )


def parse_task(raw: dict[str, Any], services: dict[str, str], nodes: dict[str, str]) -> TaskRow:
    """One entry of GET /tasks, with service and node ids turned into names."""
    status = raw.get("Status", {})
    sid, nid = raw.get("ServiceID", ""), raw.get("NodeID", "")
    return TaskRow(
        id=raw.get("ID", ""),
        service=services.get(sid, sid[:12]),
        service_id=sid,
        slot=raw.get("Slot"),
        node=nodes.get(nid, nid[:12]),
        node_id=nid,
        desired=raw.get("DesiredState", ""),
        current=status.get("State", ""),
        error=status.get("Err", ""),
        updated=raw.get("UpdatedAt", "")[:19].replace("T", " "),
    )


def build_snapshot(nodes_raw: list[dict], services_raw: list[dict], tasks_raw: list[dict]) -> Snapshot:
    """Rows from the three lists the API returned: replica counts are counted, not fetched."""
    nodes = sorted((parse_node(n) for n in nodes_raw), key=lambda n: (n.role != "manager", n.hostname))
    node_names = {n.id: n.hostname for n in nodes}
    service_names = {s.get("ID", ""): s.get("Spec", {}).get("Name", "") for s in services_raw}
    tasks = [parse_task(t, service_names, node_names) for t in tasks_raw]
    running = Counter(t.service_id for t in tasks if t.current == "running" and t.desired == "running")
    wanted = Counter(t.service_id for t in tasks if t.desired == "running")
    services = sorted((parse_service(s, running[s.get("ID", "")], wanted[s.get("ID", "")]) for s in services_raw),
                      key=lambda s: s.name)
    tasks.sort(key=lambda t: (t.service, t.slot or 0, t.desired != "running", t.updated), reverse=False)
    return Snapshot(nodes=nodes, services=services, tasks=tasks)


_WARN_ACTIONS = {"die", "kill", "oom", "destroy", "remove"}


def parse_event(raw: dict[str, Any], names: dict[str, str] | None = None) -> EventRow:
    """One Docker event; dying, killed, OOM'd and removed things, and nodes going down, are warnings."""
    actor = raw.get("Actor", {}).get("Attributes", {})
    aid = raw.get("Actor", {}).get("ID", "")
    name = actor.get("name") or actor.get("com.docker.swarm.service.name") or (names or {}).get(aid) or aid[:12]
    action = raw.get("Action", raw.get("status", ""))
    warn = action in _WARN_ACTIONS or action.startswith("health_status: unhealthy") or (
        raw.get("Type") == "node" and actor.get("state.new") == "down")
    return EventRow(float(raw.get("timeNano", 0)) / 1e9 or float(raw.get("time", 0)), raw.get("Type", ""), action,
                    name, warn)


_LOG_DETAILS = re.compile(r"^(?P<ts>\S+) (?P<details>(?:com\.docker\.[^ ]*=[^ ]*)) ?(?P<text>.*)$")


def parse_log_line(line: str, nodes: dict[str, str]) -> LogLine:
    """A `service logs --details --timestamps` line: its node id becomes the node's name."""
    m = _LOG_DETAILS.match(line)
    if not m:
        ts, _, text = line.partition(" ")
        return LogLine("", "", ts[:19], text)
    attrs = dict(kv.split("=", 1) for kv in m.group("details").split(",") if "=" in kv)
    nid = attrs.get("com.docker.swarm.node.id", "")
    return LogLine(nodes.get(nid, nid[:12]), attrs.get("com.docker.swarm.task.id", "")[:12],
                   m.group("ts")[:19].replace("T", " "), m.group("text"))


def parse_hub_users(text: str) -> list[HubUser]:
    """GET /hub/api/users (JupyterHub >= 1.0, list or paginated {items: [...]})."""
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("items", [])
    users = []
    for u in data:
        servers = tuple(
            f"{name or 'default'}: {'ready' if s.get('ready') else (s.get('pending') or 'stopped')}"
            for name, s in (u.get("servers") or {}).items()
        )
        users.append(HubUser(u.get("name", ""), bool(u.get("admin")), servers, (u.get("last_activity") or "")[:19]))
    return sorted(users, key=lambda u: u.name)


# ------------------------------------------------------------------ the last backup (pure)

def ago(seconds: float) -> str:
    """How long ago, as a person says it: 'just now', '12 min ago', '3 h ago', '2 d ago'."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def backup_run_text(run: RunStatus | None | str, now: datetime, max_age_hours: int, host: str, short: bool = False) -> str:
    """One host's last backup, e.g. '2026-12-02 01:40 UTC (3 h ago), 12.4 MiB, repo ok'."""
    from hubwizard.actions.backup import SERVICE

    if isinstance(run, str):
        return f"not readable ({run})"
    if run is None:
        return "never run"
    when = run.time.astimezone(UTC)
    stamp = when.strftime("%H:%M" if short else "%Y-%m-%d %H:%M UTC")
    if not run.ok:
        return f"failed {when.strftime('%Y-%m-%d %H:%M UTC')} (see `journalctl -u {SERVICE.removesuffix('.service')}` on {host})"
    age = (now - when).total_seconds()
    parts = [f"{stamp} ({ago(age)})"]
    if run.bytes is not None:
        parts.append(human_bytes(run.bytes))
    if run.checked == "ok" and not short:
        parts.append("repo ok")
    elif run.checked == "failed":
        parts.append("repo check FAILED")
    text = ", ".join(parts)
    if age > max_age_hours * 3600:
        text += f", older than {max_age_hours} h: is the timer running?"
    return text


def backup_line(runs: Sequence[tuple[str, RunStatus | None | str]], now: datetime, max_age_hours: int = 36) -> str:
    """The monitor's backup line: the storage host's run, then the hub's when it backs up on its own."""
    if not runs:
        return "backup: off ([backups] in the site file)"
    if len(runs) == 1:
        host, run = runs[0]
        return f"backup: {backup_run_text(run, now, max_age_hours, host)}"
    return "backup: " + " · ".join(f"{host} {backup_run_text(run, now, max_age_hours, host, short=i > 0)}"
                                   for i, (host, run) in enumerate(runs))


# --------------------------------------------------------------------- filtering


def matches(row: Sequence[str], text: str) -> bool:
    """`/` filter: every word of ``text`` appears in some cell (case-insensitive)."""
    cells = " ".join(row).lower()
    return all(word in cells for word in text.lower().split())




def node_cells(n: NodeRow) -> tuple[str, ...]:
    return (n.hostname, n.role, n.manager, n.availability, n.state, n.engine, f"{n.cpus:g}", human_bytes(n.memory))


def service_cells(s: ServiceRow) -> tuple[str, ...]:
    return (s.name, f"{s.running}/{s.desired}", s.mode, s.image, s.updated)


def task_cells(t: TaskRow) -> tuple[str, ...]:
    name = f"{t.service}.{t.slot}" if t.slot else t.service
    return (name, t.node, t.desired, t.current, t.error)


def user_cells(u: HubUser) -> tuple[str, ...]:
    return (u.name, "admin" if u.admin else "", ", ".join(u.servers) or "no server", u.last_activity)


def event_cells(e: EventRow) -> tuple[str, ...]:
    return (time.strftime("%H:%M:%S", time.localtime(e.time)), e.type, e.action, e.name)


# ----------------------------------------------------------------------- the model


class RequestCounter:
    """Counts HTTP requests at the adapters of a DockerClient (the benchmark's figure)."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        self._lock = threading.Lock()
        for adapter in list(client.api.adapters.values()):
            self._wrap(adapter)

    def _wrap(self, adapter: Any) -> None:
        send = adapter.send

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.count += 1
            return send(*args, **kwargs)

        adapter.send = counted


class MonitorModel:
    """Reads a swarm through one manager's Docker API; actions change it on request."""

    def __init__(self, client: Any, *, hub_users: Callable[[], tuple[list[HubUser] | None, str]] | None = None,
                 backup: Callable[[], str] | None = None, events_window: float = 300.0, max_events: int = 200) -> None:
        self.client = client
        self.api = client.api
        self.counter = RequestCounter(client)
        self.hub_users = hub_users
        self.backup = backup
        self._since = time.time() - events_window
        self._events: list[EventRow] = []
        self._last = 0.0  # time of the newest event kept
        self._max_events = max_events
        self._nodes: dict[str, str] = {}
        self._services: dict[str, str] = {}

    def fetch(self) -> Snapshot:
        """One refresh: four Docker API calls, plus the hub API over SSH when it is set up."""
        start, calls = time.perf_counter(), self.counter.count
        # the three lists and the hub's users at once (each waits on the network, not the CPU):
        # a refresh costs the slowest call instead of their sum
        with ThreadPoolExecutor(max_workers=5) as pool:
            lists = [pool.submit(f) for f in (self.api.nodes, self.api.services, self.api.tasks)]
            users = pool.submit(self.hub_users) if self.hub_users is not None else None
            backup = pool.submit(self.backup) if self.backup is not None else None
            try:
                nodes_raw, services_raw, tasks_raw = (f.result() for f in lists)
            except Exception as exc:  # noqa: BLE001 - shown on the screen, the poll goes on
                return Snapshot(error=_why(exc), api_calls=self.counter.count - calls, fetched_at=time.time())
            snap = build_snapshot(nodes_raw, services_raw, tasks_raw)
            self._nodes = {n.id: n.hostname for n in snap.nodes}
            self._services = {s.id: s.name for s in snap.services}
            snap.events = self._new_events()  # after the lists: events are named with them
            if users is not None:
                snap.users, snap.hub_status = users.result()
            if backup is not None:
                snap.backup = backup.result()
        snap.api_calls = self.counter.count - calls
        snap.fetched_at = time.time()
        snap.seconds = time.perf_counter() - start
        return snap

    def _new_events(self) -> list[EventRow]:
        """Events since the last refresh: one bounded call (since..until), never a held stream.
        Whole seconds overlap at the edges, so events already seen are dropped by time."""
        until = int(time.time())
        with contextlib.suppress(Exception):
            raw = self.api.events(since=int(self._since), until=until, decode=True)
            fresh = [e for e in (parse_event(r, self._nodes | self._services) for r in raw) if e.time > self._last]
            self._since = until
            if fresh:
                self._last = max(e.time for e in fresh)
            self._events = (self._events + fresh)[-self._max_events:]
        return list(reversed(self._events))

    # -- drill-downs, loaded when asked --------------------------------------------
    def _tasks(self, filters: dict[str, str]) -> list[TaskRow]:
        rows = [parse_task(t, self._services, self._nodes) for t in self.api.tasks(filters=filters)]
        return sorted(rows, key=lambda t: (t.service, t.slot or 0, t.desired != "running"))

    def tasks_of_node(self, node_id: str) -> list[TaskRow]:
        return self._tasks({"node": node_id})

    def tasks_of_service(self, service_id: str) -> list[TaskRow]:
        return self._tasks({"service": service_id})

    def logs(self, service_id: str, tail: int = 200) -> list[LogLine]:
        """The last lines of a service, each with the node it came from."""
        raw = self.api.service_logs(service_id, stdout=True, stderr=True, timestamps=True, details=True,
                                    tail=tail, follow=False)
        text = b"".join(raw) if not isinstance(raw, bytes | str) else raw
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return [parse_log_line(line, self._nodes) for line in text.splitlines() if line.strip()]

    # -- actions ----------------------------------------------------------------------
    def _availability(self, node_id: str, value: str) -> str:
        node = self.api.inspect_node(node_id)
        spec = dict(node["Spec"], Availability=value)
        self.api.update_node(node_id, node["Version"]["Index"], spec)
        return f"node {node['Description']['Hostname']}: availability {value}"

    def drain(self, node_id: str) -> str:
        return self._availability(node_id, "drain")

    def activate(self, node_id: str) -> str:
        return self._availability(node_id, "active")

    def scale(self, service_id: str, replicas: int) -> str:
        service = self.client.services.get(service_id)
        if not service.scale(replicas):
            raise RuntimeError(f"service {service.name}: scaling to {replicas} was refused")
        return f"service {service.name}: scaled to {replicas}"

    def force_update(self, service_id: str) -> str:
        service = self.client.services.get(service_id)
        service.force_update()
        return f"service {service.name}: tasks restarted (force update)"

    def remove(self, service_id: str) -> str:
        name = self._services.get(service_id, service_id[:12])
        self.api.remove_service(service_id)
        return f"service {name}: removed"


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "not a swarm manager" in first.lower() or "This node is not a swarm manager" in first:
        return "this host is not a swarm manager: run `hubwizard apply` (swarm init) first"
    return f"{type(exc).__name__}: {first}"


# ------------------------------------------------------------------ hub API over SSH


def hub_users_reader(transport: Any, token: str | None, url: str = HUB_API) -> Callable[[], tuple[list[HubUser] | None, str]]:
    """Ask JupyterHub for its users from the hub host; the token goes on stdin, never argv."""

    def read() -> tuple[list[HubUser] | None, str]:
        if not token:
            return None, "hub API not reachable: no hub_api_token secret"
        cmd = f"curl -fsS --max-time 3 -H @- {url}/users"
        try:
            res = transport.run(cmd, stdin=f"Authorization: token {token}\n", timeout=5)
        except Exception as exc:  # noqa: BLE001
            return None, f"hub API not reachable: {exc}"
        if res.exit_code != 0:
            return None, f"hub API not reachable: {(res.stderr or res.stdout).strip()[:120]}"
        try:
            users = parse_hub_users(res.stdout)
        except ValueError:
            return None, "hub API not reachable: the answer was not JSON"
        return users, f"{len(users)} users"

    return read


def backup_reader(site: Site, conns: Connections, every: float = 60.0,
                  clock: Callable[[], float] = time.monotonic) -> Callable[[], str]:
    """The backup line from each backup host's status file: one `cat` per host, read again at
    most every ``every`` seconds (a backup runs nightly; the ages in the line are recomputed
    on each refresh)."""
    from hubwizard.actions import backup

    hosts = [h.name for h in backup.backup_hosts(site)] if site.backups.enabled else []
    cached: dict[str, Any] = {"at": None, "runs": []}
    lock = threading.Lock()

    def read_one(host: str) -> RunStatus | None | str:
        try:
            res = conns.get(host).run(f"cat {backup.STATUS} 2>/dev/null || true", timeout=10)
            return backup.parse_status(res.stdout)
        except ValueError:
            return f"{backup.STATUS} on {host} is not the backup's status file"
        except Exception as exc:  # noqa: BLE001 - said in the line; the next read tries again
            return f"{host}: {getattr(exc, 'message', exc)}".splitlines()[0][:120]

    def read() -> str:
        with lock:
            if cached["at"] is None or clock() - cached["at"] >= every:
                cached["runs"] = [(h, read_one(h)) for h in hosts]
                cached["at"] = clock()
            runs = cached["runs"]
        return backup_line(runs, datetime.now(UTC), site.backups.max_age_hours)

    return read


def connect(site: Site, secrets: Secrets, *, confirm: Callable[[str, str], bool] | None = None,
            accept_new_host_keys: bool = False) -> tuple[MonitorModel, Connections]:
    """A model on the site's hub (a swarm manager), and the Connections to close afterwards.

    Takes the site and secrets, not a Session: the monitor needs no recipes or journal."""
    from hubwizard.remote.connections import Connections

    conns = Connections(site, secrets, accept_new_host_keys=accept_new_host_keys, confirm=confirm)
    return model_on(conns, site, secrets), conns


def model_on(conns: Connections, site: Site, secrets: Secrets) -> MonitorModel:
    """A model on the site's hub through connections the caller holds (the TUI's one per site)."""
    from hubwizard.remote.dockerapi import client_for

    hub = conns.get(site.hub_host.name)
    token = secrets.get("hub_api_token", required=False)
    return MonitorModel(client_for(hub, timeout=30), hub_users=hub_users_reader(hub, token),
                        backup=backup_reader(site, conns))


def filter_rows(rows: Iterable[tuple[str, ...]], text: str) -> list[tuple[str, ...]]:
    return [r for r in rows if not text or matches(r, text)]
