"""The run screen's live cluster panel: the swarm's nodes and services while the install runs.

Fed by the monitor's own model (hubwizard.monitor) through the app's ``monitor_source``, so it
costs what a monitor refresh costs (four Docker API calls) at most once per interval: one poll
at a time, the next scheduled when the last is drawn, and none while the panel is hidden
(toggled off at 80x24, or another screen or a modal on top)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Static

from hubwizard import monitor as model

_STYLE = {"ready": "green", "down": "bold red", "Leader": "bold", "drain": "yellow", "active": "green"}


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def node_row(n: model.NodeRow) -> tuple[str, ...]:
    return (n.hostname, n.manager or n.role, n.state, n.availability)


def service_row(s: model.ServiceRow) -> tuple[str, ...]:
    return (s.name, f"{s.running}/{s.desired}", s.mode)


class ClusterPanel(Vertical):
    """Nodes and services of the swarm being built; polls only once started and while shown."""

    class Fetched(Message):
        def __init__(self, snapshot: model.Snapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    def __init__(self, source_factory: Callable[[], model.Source], interval: float = 2.0, **kw: str) -> None:
        super().__init__(**kw)
        self.source_factory = source_factory
        self.source: model.Source | None = None
        self.interval = interval
        self.started = False  # the swarm exists: polls may run
        self.polls = 0
        self.snapshot: model.Snapshot | None = None
        self._timer: Timer | None = None
        self._busy = False  # a poll is on its way: never two at once

    def compose(self) -> ComposeResult:
        yield Static("cluster: shown once the swarm exists (after swarm-init)", id="cluster-status")
        yield Static("", id="cluster-backup")  # the last backup, once [backups] is on and the swarm is read
        yield DataTable(id="cluster-nodes", cursor_type="none", zebra_stripes=True)
        yield DataTable(id="cluster-services", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#cluster-backup", Static).display = False
        self.query_one("#cluster-nodes", DataTable).add_columns("NODE", "ROLE", "STATE", "AVAIL")
        self.query_one("#cluster-services", DataTable).add_columns("SERVICE", "REPLICAS", "MODE")

    @property
    def shown(self) -> bool:
        """Visible to the admin: displayed, and its screen on top (not under a modal)."""
        try:
            return self.display and self.app.screen is self.screen
        except Exception:  # noqa: BLE001 - no screen stack while shutting down
            return False

    def start(self) -> None:
        """The swarm exists: begin polling (once)."""
        if not self.started:
            self.started = True
            self.query_one("#cluster-status", Static).update("cluster: reading the swarm…")
            self.poll()

    def poll(self) -> None:
        """One fetch if started, shown and none is running; the next is set when it is drawn.
        A hidden panel just stops: `resume` starts it again when it is shown."""
        self._timer = None
        if self.started and self.shown and not self._busy:
            self._busy = True
            self.fetch()

    def resume(self) -> None:
        """Shown again (toggled on, a modal closed): poll now unless one is due anyway."""
        if self._timer is None:
            self.poll()

    @work(thread=True, exclusive=True, group="cluster-poll")
    def fetch(self) -> None:
        try:
            if self.source is None:
                self.source = self.source_factory()
            snap = self.source.fetch()
        except Exception as exc:  # noqa: BLE001 - said in the panel; the next poll tries again
            snap = model.Snapshot(error=f"{getattr(exc, 'message', exc)}".splitlines()[0][:200])
        self.post_message(self.Fetched(snap))

    def on_cluster_panel_fetched(self, message: Fetched) -> None:
        self._busy = False
        self.polls += 1
        self.snapshot = message.snapshot
        self.draw(message.snapshot)
        if self._timer is None and self.is_mounted:
            self._timer = self.set_timer(self.interval, self.poll)

    def draw(self, snap: model.Snapshot) -> None:
        status = self.query_one("#cluster-status", Static)
        if snap.error:
            status.update(Text(f"cluster: not readable yet: {snap.error}", style="yellow"))
            return
        status.update(f"cluster: {_count(len(snap.nodes), 'node')}, {_count(len(snap.services), 'service')} "
                      f"· {snap.api_calls} API calls a refresh")
        backup = self.query_one("#cluster-backup", Static)
        backup.display = bool(snap.backup)
        failed = "failed" in snap.backup.lower() or "not readable" in snap.backup
        backup.update(Text(snap.backup, style="bold red" if failed else "", no_wrap=True, overflow="ellipsis"))
        self._fill("#cluster-nodes", [(n.id, node_row(n)) for n in snap.nodes])
        self._fill("#cluster-services", [(s.id, service_row(s)) for s in snap.services])

    def _fill(self, selector: str, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        table = self.query_one(selector, DataTable)
        table.clear()
        for key, cells in rows:
            table.add_row(*(self._cell(c) for c in cells), key=key)

    @staticmethod
    def _cell(text: str) -> Text:
        style = _STYLE.get(text, "")
        if "/" in text and text.replace("/", "").isdigit():
            running, desired = text.split("/")
            style = "green" if running == desired else "yellow"
        return Text(text, style=style, no_wrap=True)

    def rows(self, which: str) -> list[tuple[str, ...]]:
        """What a table shows, as text (tests, and the run screen's summary)."""
        table = self.query_one(f"#cluster-{which}", DataTable)
        return [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
