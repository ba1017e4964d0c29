"""The live cluster monitor: nodes, services, tasks, hub users, events, service logs.

One poll worker fetches a snapshot (a fixed number of Docker API calls, see
hubwizard.monitor); when it has been rendered the next poll is scheduled with set_timer, so
polls never overlap. Only the visible tab is rendered, and nothing is fetched or rendered
while another screen or a modal is on top: the monitor catches up when it is shown again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from hubwizard.screens.keys import NavScreen, go_back
from hubwizard.screens.modals import AskModal, ConfirmModal
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from hubwizard import monitor as model

COLUMNS = {
    "nodes": ("HOSTNAME", "ROLE", "MANAGER", "AVAILABILITY", "STATE", "ENGINE", "CPU", "MEMORY"),
    "services": ("NAME", "REPLICAS", "MODE", "IMAGE", "UPDATED"),
    "tasks": ("TASK", "NODE", "DESIRED", "CURRENT", "ERROR"),
    "users": ("USER", "ADMIN", "SERVERS", "LAST ACTIVITY"),
    "events": ("TIME", "TYPE", "ACTION", "NAME"),
    "logs": ("TIME", "NODE", "TASK", "LINE"),
}


_NODE_ACTIONS = ("drain", "activate")
_SERVICE_ACTIONS = ("scale", "force_update", "remove", "logs")

_CELL_STYLE = {"Leader": "bold", "ready": "green", "running": "green", "active": "green", "drain": "yellow",
               "pause": "yellow", "down": "bold red", "Unreachable": "bold red", "failed": "bold red",
               "rejected": "bold red", "orphaned": "red", "pending": "yellow", "preparing": "yellow",
               "starting": "yellow", "0/1": "bold red", "die": "red", "oom": "bold red", "kill": "red"}


def _cell(text: str) -> Text:
    """A cell as Text, never markup (a task error such as "[E] ..." must show as it is), coloured
    when it is a state worth seeing at a glance."""
    return Text(text, style=_CELL_STYLE.get(text, ""), no_wrap=True, end="")


class MonitorScreen(NavScreen):
    """k9s/dry-like views of one swarm, through its manager's Docker API."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    HELP = ("Enter on a node or service lists its tasks. D and A act on the node selected in the Nodes tab; "
            "S, F, X and l on the service selected in the Services tab.")
    BINDINGS = [
        Binding("q", "back", "Back/quit"),
        Binding("escape", "back", "Back/quit", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("r", "refresh", "Refresh", show=False),  # it polls by itself
        Binding("l", "logs", "Logs"),
        # capitals change the cluster; each asks first (a lowercase slip changes nothing)
        Binding("D", "drain", "Drain…"),
        Binding("A", "activate", "Activate…"),
        Binding("S", "scale", "Scale…"),
        Binding("F", "force_update", "Force upd…"),
        Binding("X", "remove", "Remove…"),
        Binding("w", "warnings", "Warnings", show=False),
        Binding("1", "tab('nodes')", "Nodes", show=False),
        Binding("2", "tab('services')", "Services", show=False),
        Binding("3", "tab('tasks')", "Tasks", show=False),
        Binding("4", "tab('users')", "Users", show=False),
        Binding("5", "tab('events')", "Events", show=False),
        Binding("6", "tab('logs')", "Logs", show=False),
    ]

    class Fetched(Message):
        def __init__(self, snapshot: model.Snapshot, stop: bool = False) -> None:
            super().__init__()
            self.snapshot = snapshot
            self.stop = stop  # cannot connect (refused host key, no route): wait for `r`

    class Drilled(Message):
        def __init__(self, title: str, tasks: list[model.TaskRow]) -> None:
            super().__init__()
            self.title, self.tasks = title, tasks

    class LogsLoaded(Message):
        def __init__(self, title: str, lines: list[model.LogLine]) -> None:
            super().__init__()
            self.title, self.lines = title, lines

    class Failed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, source_factory: Callable[[], model.Source], interval: float = 2.0,
                 title: str = "") -> None:
        super().__init__()
        self.source_factory = source_factory
        self.source: model.Source | None = None
        self.interval = interval
        self.site_title = title
        self.snapshot = model.Snapshot()
        self.filter_text = ""
        self.warnings_only = False
        self.drill: tuple[str, list[model.TaskRow]] | None = None
        self.log_view: tuple[str, list[model.LogLine]] = ("", [])
        self.dirty: set[str] = set(COLUMNS)
        self._shown: dict[str, list] = {}  # what each table holds now: (key, cells) rows
        self.renders = 0
        self.polls = 0
        self._timer: Timer | None = None
        self._waiting = False  # a poll was due while hidden

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("connecting…", id="status")
        yield Static("", id="backup", classes="hidden")  # the last backup, when [backups] is on
        yield Input(placeholder="filter: words that must all appear (Esc clears)", id="filter", classes="hidden")
        with TabbedContent(id="tabs", initial="nodes"):
            for name in COLUMNS:
                with TabPane(name.capitalize(), id=name):
                    yield DataTable(id=f"{name}-table", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def on_mount(self) -> None:
        for name, cols in COLUMNS.items():
            self.query_one(f"#{name}-table", DataTable).add_columns(*cols)
        self.query_one("#nodes-table", DataTable).focus()
        self.poll()

    @property
    def shown(self) -> bool:
        """On top: not hidden by another screen, nor under a modal (Textual's is_current says
        yes under a modal, which still costs a render nobody can use)."""
        try:
            return self.app.screen is self
        except Exception:  # noqa: BLE001 - no screen stack while shutting down
            return False

    # -- polling -------------------------------------------------------------------
    def poll(self) -> None:
        """Start one fetch unless hidden; the next is scheduled when this one is rendered."""
        self._timer = None
        if not self.shown:
            self._waiting = True
            return
        self._waiting = False
        self.fetch()

    @work(thread=True, exclusive=True, group="monitor-poll")
    def fetch(self) -> None:
        if self.source is None:
            try:
                self.source = self.source_factory()
            except Exception as exc:  # noqa: BLE001 - e.g. a refused host key: asking again each poll would nag
                fix = getattr(exc, "fix", None)
                text = f"{getattr(exc, 'message', exc)}" + (f"; fix: {fix}" if fix else "") + "; press r to retry"
                self.post_message(self.Fetched(model.Snapshot(error=text), stop=True))
                return
        try:
            snap = self.source.fetch()
        except Exception as exc:  # noqa: BLE001 - shown in the status line, polling goes on
            snap = model.Snapshot(error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
        self.post_message(self.Fetched(snap))

    def on_monitor_screen_fetched(self, message: Fetched) -> None:
        self.polls += 1
        self.snapshot = message.snapshot
        self.dirty |= {"nodes", "services", "tasks", "users", "events"}
        self.render_visible()
        if self._timer is None and not message.stop:
            self._timer = self.set_timer(self.interval, self.poll)

    def on_screen_resume(self) -> None:
        if self._waiting:
            self.poll()
        else:
            self.render_visible()

    def action_refresh(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.poll()

    # -- rendering -------------------------------------------------------------------
    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active or "nodes"

    def rows(self, name: str) -> list[tuple[str, tuple[str, ...]]]:
        """(row key, cells) of a view, filtered."""
        s = self.snapshot
        if name == "nodes":
            rows = [(n.id, model.node_cells(n)) for n in s.nodes]
        elif name == "services":
            rows = [(v.id, model.service_cells(v)) for v in s.services]
        elif name == "tasks":
            tasks = self.drill[1] if self.drill else s.tasks
            rows = [(t.id, model.task_cells(t)) for t in tasks]
        elif name == "users":
            rows = [(u.name, model.user_cells(u)) for u in s.users or []]
            if s.users is None and s.fetched_at:
                rows = [("-", (s.hub_status, "", "", ""))]  # say why, in the table itself
        elif name == "events":
            events = [e for e in s.events if e.warning or not self.warnings_only]
            rows = [(f"{i}", model.event_cells(e)) for i, e in enumerate(events)]
        else:
            rows = [(f"{i}", (ln.time, ln.node, ln.task, ln.text)) for i, ln in enumerate(self.log_view[1])]
        return [(k, c) for k, c in rows if model.matches(c, self.filter_text)]

    def render_visible(self) -> None:
        """Render the visible tab only; other tabs stay dirty until they are shown."""
        if not self.shown:
            return
        self.renders += 1
        self._status()
        name = self.active
        if name in self.dirty:
            self.dirty.discard(name)
            self._fill(name)
        tabs = self.query_one(TabbedContent)
        for other in self.dirty:  # hidden tabs: no table work, but their labels count what is new
            tabs.get_tab(other).label = self._label(other, self._count(other))

    def _fill(self, name: str) -> None:
        """Bring a table to the snapshot: unchanged rows cost nothing, changed cells are updated
        in place, and only a different set or order of rows rebuilds the table."""
        table = self.query_one(f"#{name}-table", DataTable)
        rows = self.rows(name)
        shown = self._shown.get(name)
        if shown != rows:
            if shown is not None and [k for k, _ in shown] == [k for k, _ in rows]:
                self._update_cells(table, name, shown, rows)
            else:
                self._rebuild(table, rows)
            self._shown[name] = rows
        pane = self.query_one(TabbedContent).get_tab(name)
        pane.label = self._label(name, len(rows))

    def _update_cells(self, table: DataTable, name: str, shown: list, rows: list) -> None:
        columns = list(table.columns)
        for (key, old), (_, new) in zip(shown, rows, strict=True):
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                if a != b:
                    table.update_cell(key, columns[i], _cell(b), update_width=True)

    def _rebuild(self, table: DataTable, rows: list) -> None:
        keep = None
        if table.row_count and table.cursor_row >= 0:
            with contextlib.suppress(Exception):  # cursor beyond the rows: keep nothing
                keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for key, cells in rows:
            table.add_row(*(_cell(c) for c in cells), key=key)
        if keep is not None:
            with contextlib.suppress(Exception):  # that row is gone
                table.move_cursor(row=table.get_row_index(keep), animate=False)

    def _count(self, name: str) -> int:
        s = self.snapshot
        sizes = {"nodes": len(s.nodes), "services": len(s.services),
                 "tasks": len(self.drill[1]) if self.drill else len(s.tasks), "users": len(s.users or []),
                 "events": len(s.events), "logs": len(self.log_view[1])}
        return sizes[name]

    def _label(self, name: str, count: int) -> str:
        if name == "tasks" and self.drill:
            return f"Tasks: {self.drill[0]} ({count})"
        if name == "logs" and self.log_view[0]:
            return f"Logs: {self.log_view[0]}"
        if name == "users" and self.snapshot.users is None:
            return "Users (?)"
        return f"{name.capitalize()} ({count})"

    def _status(self) -> None:
        s = self.snapshot
        if s.error:
            text = Text.assemble(("cannot read the swarm: ", "bold red"), s.error)
        elif not s.fetched_at:
            text = Text("connecting…")
        else:
            filt = f"  filter: {self.filter_text!r}" if self.filter_text else ""
            text = Text.assemble((self.site_title, "bold"), f" {len(s.nodes)} nodes, {len(s.services)} services, "
                                 f"{len(s.tasks)} tasks, {s.api_calls} API calls every {self.interval:g}s{filt} | "
                                 f"{s.hub_status}")
        self.query_one("#status", Static).update(text)
        self._backup_line(s.backup)

    def _backup_line(self, line: str) -> None:
        """The last backup under the status: red when it failed, yellow when never run or late."""
        widget = self.query_one("#backup", Static)
        widget.set_class(not line, "hidden")
        bad = any(w in line for w in ("failed", "FAILED", "not readable"))
        late = any(w in line for w in ("never run", "older than", "backup: off"))
        widget.update(Text(line, style="bold red" if bad else "yellow" if late else "", no_wrap=True, overflow="ellipsis"))

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        self.render_visible()
        self.query_one(f"#{self.active}-table", DataTable).focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Node actions on the Nodes tab, service actions on the Services tab: the footer offers
        only what applies to the selected row."""
        tab = {**dict.fromkeys(_NODE_ACTIONS, "nodes"), **dict.fromkeys(_SERVICE_ACTIONS, "services")}.get(action)
        if tab is None:
            return True
        try:
            return self.active == tab
        except Exception:  # noqa: BLE001 - not composed yet
            return False

    # -- filter ------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.dirty |= set(COLUMNS)
        self.render_visible()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(f"#{self.active}-table", DataTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if self.filter_text or not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.filter_text = ""
            self.dirty |= set(COLUMNS)
            self.query_one(f"#{self.active}-table", DataTable).focus()
        elif self.drill and self.active == "tasks":
            self.drill = None
            self.dirty.add("tasks")
        else:
            go_back(self.app)  # stand-alone monitor: quit
            return
        self.render_visible()

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def action_warnings(self) -> None:
        self.warnings_only = not self.warnings_only
        self.dirty.add("events")
        self.render_visible()

    # -- drill-down ----------------------------------------------------------------------
    def _selected(self, name: str) -> str | None:
        if self.active != name:
            return None
        table = self.query_one(f"#{name}-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowSelected)
    def _enter(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if event.data_table.id == "nodes-table" and key:
            name = next((n.hostname for n in self.snapshot.nodes if n.id == key), key[:12])
            self.load_tasks(f"node {name}", "node", key)
        elif event.data_table.id == "services-table" and key:
            name = next((v.name for v in self.snapshot.services if v.id == key), key[:12])
            self.load_tasks(f"service {name}", "service", key)

    @work(thread=True, exclusive=True, group="monitor-drill")
    def load_tasks(self, title: str, kind: str, key: str) -> None:
        try:
            assert self.source is not None
            tasks = self.source.tasks_of_node(key) if kind == "node" else self.source.tasks_of_service(key)
        except Exception as exc:  # noqa: BLE001
            self.post_message(self.Failed(f"cannot list the tasks of {title}: {exc}"))
            return
        self.post_message(self.Drilled(title, tasks))

    def on_monitor_screen_drilled(self, message: Drilled) -> None:
        self.drill = (message.title, message.tasks)
        self.dirty.add("tasks")
        self.action_tab("tasks")
        self.render_visible()

    def on_monitor_screen_failed(self, message: Failed) -> None:
        self.notify(message.text, severity="error", timeout=8, markup=False)

    def on_monitor_screen_logs_loaded(self, message: LogsLoaded) -> None:
        self.log_view = (message.title, message.lines)
        self.dirty.add("logs")
        self.action_tab("logs")
        self.render_visible()

    # -- actions (each confirmed) ---------------------------------------------------------
    def _node(self) -> model.NodeRow | None:
        key = self._selected("nodes")
        node = next((n for n in self.snapshot.nodes if n.id == key), None)
        if node is None:
            self.notify("select a node in the Nodes tab first", severity="warning")
        return node

    def _service(self) -> model.ServiceRow | None:
        key = self._selected("services")
        svc = next((v for v in self.snapshot.services if v.id == key), None)
        if svc is None:
            self.notify("select a service in the Services tab first", severity="warning")
        return svc

    def _confirm_then(self, title: str, body: str, call: Callable[[], str]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.act(call)

        self.app.push_screen(ConfirmModal(title, body), answered)

    @work(thread=True, exclusive=True, group="monitor-action")
    def act(self, call: Callable[[], str]) -> None:
        """One confirmed action at a time; its result is a notification, then a refresh."""
        try:
            text = call()
        except Exception as exc:  # noqa: BLE001
            self.post_message(self.Failed(f"{type(exc).__name__}: {exc}"))
            return
        self.app.call_from_thread(self.notify, text, markup=False)
        self.app.call_from_thread(self.action_refresh)

    def action_drain(self) -> None:
        node = self._node()
        if node and self.source:
            src = self.source
            self._confirm_then(f"Drain node {node.hostname}?",
                               "Its tasks move to other nodes and no new task is scheduled on it.",
                               lambda: src.drain(node.id))

    def action_activate(self) -> None:
        node = self._node()
        if node and self.source:
            src = self.source
            self._confirm_then(f"Activate node {node.hostname}?", "New tasks can be scheduled on it again.",
                               lambda: src.activate(node.id))

    def action_force_update(self) -> None:
        svc = self._service()
        if svc and self.source:
            src = self.source
            self._confirm_then(f"Force-update service {svc.name}?", "Every task is restarted, one after another.",
                               lambda: src.force_update(svc.id))

    def action_remove(self) -> None:
        svc = self._service()
        if svc and self.source:
            src = self.source
            self._confirm_then(f"Remove service {svc.name}?",
                               "Its tasks stop and the service is deleted (a stuck one, usually).",
                               lambda: src.remove(svc.id))

    def action_scale(self) -> None:
        svc = self._service()
        if not (svc and self.source) or svc.mode != "replicated":
            if svc:
                self.notify("a global service runs one task per node; it cannot be scaled", severity="warning")
            return
        src = self.source

        def answered(value: str | None) -> None:
            if value and value.isdigit():
                n = int(value)
                self._confirm_then(f"Scale {svc.name} from {svc.desired} to {n} replicas?", "",
                                   lambda: src.scale(svc.id, n))

        self.app.push_screen(AskModal(f"Replicas of {svc.name}", str(svc.desired), restrict=r"[0-9]*"), answered)

    def action_logs(self) -> None:
        svc = self._service()
        if svc:
            self.load_logs(svc.name, svc.id)

    @work(thread=True, exclusive=True, group="monitor-logs")
    def load_logs(self, name: str, key: str) -> None:
        try:
            assert self.source is not None
            lines = self.source.logs(key)
        except Exception as exc:  # noqa: BLE001
            self.post_message(self.Failed(f"cannot read the logs of {name}: {exc}"))
            return
        self.post_message(self.LogsLoaded(name, lines))

