"""The run screen: `Engine.run("apply")` in a thread worker, shown live.

A step list with the status per host, a log pane streaming command output, progress bars
from Progress events, and on failure a panel (host, command, output tail, fix) with Retry /
Skip / Abort. Once the swarm exists, a cluster panel (screens/cluster.py, the monitor's model)
shows its nodes joining and its services starting: beside the log from 110 columns, in place
of the log on `c` below that. Output lines can come by the thousand: the engine's sink only appends them to
a buffer, and a 10 Hz timer writes what arrived in one go, so keys stay responsive."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from hubwizard.screens.cluster import ClusterPanel
from hubwizard.screens.keys import NavScreen, go_back
from hubwizard.screens.modals import ConfirmModal, FailureModal
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, RichLog, Static

from hubwizard.core.events import CommandStarted, Connecting, HostResult, OutputLine, Progress, StepFinished, StepStarted

_STYLE = {"changed": "yellow", "unchanged": "green", "ok": "green", "skipped": "dim", "failed": "bold red",
          "unreachable": "bold red", "running": "cyan"}


_SIDE_SHARE = 0.45  # the step table's share of the width when the log pane is beside it
_BESIDE = 100  # the right column's width from which the cluster panel sits beside the log, not under it
_WIDE = 110  # from this width the cluster panel sits beside the log by itself; below, `c` swaps them
SWARM_STEP = "swarm-init"  # the step after which the swarm exists and the cluster panel can read it
_CELL = max(len(s) for s in _STYLE)  # the widest status a host cell shows


def needed_width(steps: list[str], hosts: list[str]) -> int:
    """Cells the step table needs: the step column, a column per host, a scroll bar."""
    step = max([len("STEP"), *map(len, steps)]) + 2
    return step + sum(max(len(h), _CELL) + 2 for h in hosts) + 2


class RunScreen(NavScreen):
    """Apply the site, step by step, with everything visible."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("l", "toggle_log", "Log size"), Binding("c", "toggle_cluster", "Cluster")]

    class Events(Message):
        """Step/host events (not output lines: those go through the buffer)."""

        def __init__(self, events: list[Any]) -> None:
            super().__init__()
            self.events = events

    class Finished(Message):
        def __init__(self, code: int, error: str = "") -> None:
            super().__init__()
            self.code, self.error = code, error

    def __init__(self, start: str | None = None, confirm: bool = True, autostart: bool = True) -> None:
        super().__init__()
        self.autostart = autostart  # False: events are posted by a test or the screenshot script
        self.start = start
        self.ask_first = confirm
        self.running = False
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.failures: list[HostResult] = []
        self.bars: dict[str, ProgressBar] = {}
        self.flushes = 0
        self.lines_written = 0
        self.hosts: list[str] = []
        self.steps_width = 0  # cells the step table needs to show every host column
        self.cluster_choice: bool | None = None  # `c` pressed: shown or not; None: shown when wide
        self._after_swarm: set[str] = set()  # steps that start only once the swarm exists

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-status")
        with Horizontal(id="run-body"):
            yield DataTable(id="steps", cursor_type="row", zebra_stripes=True)
            with Vertical(id="right"):
                yield Vertical(id="bars")
                with Horizontal(id="panes"):
                    yield RichLog(id="log", max_lines=5000, wrap=False, markup=False)
                    yield ClusterPanel(self.app.monitor_source, interval=getattr(self.app, "interval", 2.0),
                                       id="cluster")
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def on_mount(self) -> None:
        self.sub_title = "apply"
        table = self.query_one("#steps", DataTable)
        try:
            session = self.app.session()
        except Exception as exc:  # noqa: BLE001 - bad site or recipes: say so, run nothing
            self.query_one("#run-status", Static).update(Text(f"cannot run: {exc}", style="bold red"))
            return
        self.hosts = [h.name for h in session.site.active_hosts]
        table.add_column("STEP", key="step")
        for h in self.hosts:
            table.add_column(h, key=h)
        for step in session.steps:
            table.add_row(step.id, *["" for _ in self.hosts], key=step.id)
        self.steps_width = needed_width([s.id for s in session.steps], self.hosts)
        ids = [s.id for s in session.steps]
        self._after_swarm = set(ids[ids.index(SWARM_STEP) + 1:]) if SWARM_STEP in ids else set()
        done = session.journal.latest().get((SWARM_STEP, session.site.hub_host.name))
        if done is not None and done.phase == "done":  # a resumed install: the swarm is there already
            self.query_one(ClusterPanel).start()
        self.fit()
        self.set_interval(0.1, self.flush)
        if not self.autostart:
            return
        if self.ask_first:
            self.app.push_screen(ConfirmModal("Apply the site now?",
                                              "Every step runs check -> apply -> verify on its hosts; steps already "
                                              "done and still in the desired state are skipped."), self._go)
        else:
            self._go(True)

    def _go(self, yes: bool | None) -> None:
        if not yes:
            self.app.pop_screen()
            return
        self.launch(self.start)

    # -- the worker ---------------------------------------------------------------------
    def launch(self, start: str | None) -> None:
        self.running = True
        self.failures.clear()
        self.query_one("#run-status", Static).update(f"running{' from ' + start if start else ''}…")
        self.apply(start)

    def sink(self, event: Any) -> None:
        """Called on the engine's threads: never touches a widget."""
        if isinstance(event, OutputLine):
            with self._lock:
                self._lines.append(f"{event.host}| {event.line}")
        elif isinstance(event, CommandStarted):
            with self._lock:
                self._lines.append(f"{event.host}$ {event.command}")
        elif isinstance(event, Connecting):
            with self._lock:
                self._lines.append(f"connecting to {event.host} ({event.address}, {event.timeout:g} s)…")
        else:
            self.post_message(self.Events([event]))

    @work(thread=True, exclusive=True, group="apply")
    def apply(self, start: str | None) -> None:
        try:
            summary = self.app.engine(self.sink).run("apply", start=start)
        except Exception as exc:  # noqa: BLE001 - shown in the status line
            self.post_message(self.Finished(2, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Finished(summary.exit_code))

    # -- rendering (UI thread) ---------------------------------------------------------------
    def flush(self) -> None:
        """Write the buffered output lines in one go (merges floods)."""
        with self._lock:
            lines, self._lines = self._lines, []
        if not lines:
            return
        self.flushes += 1
        self.lines_written += len(lines)
        log = self.query_one("#log", RichLog)
        for line in lines[-2000:]:
            log.write(Text(line))

    def on_run_screen_events(self, message: Events) -> None:
        table = self.query_one("#steps", DataTable)
        for e in message.events:
            if isinstance(e, StepStarted):
                for h in e.hosts:
                    self._cell(table, e.step, h, "running")
            elif isinstance(e, HostResult):
                self._cell(table, e.step, e.host, e.status)
                if e.status in ("failed", "unreachable"):
                    self.failures.append(e)
            elif isinstance(e, Progress):
                self._progress(e)
            elif isinstance(e, StepFinished):
                self._done_bars(e.step)
            self._swarm_seen(e)

    def _swarm_seen(self, e: Any) -> None:
        """swarm-init done, or a later step started: the cluster panel may start reading it."""
        panel = self.query_one(ClusterPanel)
        if panel.started:
            return
        if (isinstance(e, StepFinished) and e.step == SWARM_STEP and e.status not in ("failed", "unreachable")) or (
                isinstance(e, StepStarted) and e.step in self._after_swarm):
            panel.start()
            self.place_cluster()

    def _cell(self, table: DataTable, step: str, host: str, status: str) -> None:
        if host in self.hosts and step in table.rows:
            table.update_cell(step, host, Text(status, style=_STYLE.get(status, "")), update_width=True)
            if status == "running":
                table.move_cursor(row=table.get_row_index(step))

    def _progress(self, e: Progress) -> None:
        key = f"{e.step}-{e.host}-{e.label}"
        bar = self.bars.get(key)
        if bar is None:
            box = self.query_one("#bars", Vertical)
            bar = ProgressBar(total=e.total, show_eta=False)
            self.bars[key] = bar
            box.mount(Label(f"{e.host}: {e.label}", classes="bar-label"), bar)
        bar.update(total=e.total, progress=e.done)

    def _done_bars(self, step: str) -> None:
        box = self.query_one("#bars", Vertical)
        if not any(k.startswith(step + "-") for k in self.bars):
            return
        self.bars = {k: v for k, v in self.bars.items() if not k.startswith(step + "-")}
        if not self.bars:
            box.remove_children()

    def on_run_screen_finished(self, message: Finished) -> None:
        self.running = False
        self.flush()
        status = self.query_one("#run-status", Static)
        if message.error:
            status.update(Text(f"cannot run: {message.error}", style="bold red"))
        elif self.failures:
            f = self.failures[0]
            status.update(Text(f"step {f.step} failed on {f.host}", style="bold red"))
            self.app.push_screen(FailureModal(f.step, f.host, f.command, f.output_tail, f.fix, f.message),
                                 lambda answer: self._after_failure(f, answer))
        else:
            status.update(Text("done: every step is in the desired state (verify with `hubwizard verify`)",
                               style="bold green"))

    def _after_failure(self, failed: HostResult, answer: str | None) -> None:
        if answer == "retry":
            self.launch(failed.step)
        elif answer == "skip":
            ids = [s.id for s in self.app.session().steps]
            later = ids[ids.index(failed.step) + 1:] if failed.step in ids else []
            if later:
                self.launch(later[0])
        else:
            self.query_one("#run-status", Static).update(
                Text(f"aborted after {failed.step} failed on {failed.host}; the journal keeps what is done: "
                     "come back to resume", style="red"))

    def on_resize(self) -> None:
        self.fit()

    def on_screen_resume(self) -> None:
        """A modal closed: the cluster panel catches up (it does not poll under one)."""
        self.place_cluster()

    def fit(self) -> None:
        """Side by side only when the step table still shows every host column in its share of
        the width; else the log pane goes under the table (80x24 with a hub and two nodes)."""
        if self.steps_width:
            self.set_class(self.steps_width > self.size.width * _SIDE_SHARE, "stacked")
        self.place_cluster()
        self.call_after_refresh(self._keep_cursor_in_view)

    def place_cluster(self) -> None:
        """The cluster panel beside the log when wide and the swarm exists; below _WIDE columns
        it takes the log's place, only when asked (`c`)."""
        panel = self.query_one(ClusterPanel)
        wide = self.size.width >= _WIDE
        on = self.cluster_choice if self.cluster_choice is not None else (wide and panel.started)
        self.set_class(not wide, "narrow")
        right = self.size.width * (1 if self.has_class("stacked") else 1 - _SIDE_SHARE)
        self.set_class(right < _BESIDE, "cluster-below")  # a narrow right column: the log keeps its width
        self.set_class(on, "cluster-on")
        if on:
            self.call_after_refresh(panel.resume)

    def action_toggle_cluster(self) -> None:
        shown = self.has_class("cluster-on")
        self.cluster_choice = not shown
        self.place_cluster()
        self.call_after_refresh(self._keep_cursor_in_view)  # at 80x24 the table gets smaller

    def action_toggle_log(self) -> None:
        self.query_one("#right").toggle_class("wide")
        self.call_after_refresh(self._keep_cursor_in_view)

    def _keep_cursor_in_view(self) -> None:
        """A smaller table still shows the step that runs (the cursor follows it), and the log
        its last lines."""
        table = self.query_one("#steps", DataTable)
        if table.row_count:
            table.move_cursor(row=table.cursor_row, scroll=True)
        self.query_one("#log", RichLog).scroll_end(animate=False)

    def action_back(self) -> None:
        if self.running:
            self.notify("a step is running; it finishes first (the journal stays consistent)", severity="warning")
            return
        go_back(self.app)
