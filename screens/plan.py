"""Plan review: each step, what it would change on each host, and the exact commands.

This is `Engine.run("plan")` (read-only checks only), its events shown as a tree as they
arrive; nothing here decides anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubwizard.screens.keys import NavScreen
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Footer, Header, Static, Tree
from textual.widgets.tree import TreeNode

from hubwizard.core.events import HostResult, StepFinished, StepStarted

_STYLE = {"would-change": "yellow", "unchanged": "green", "skipped": "dim", "failed": "red", "unreachable": "red"}


class PlanScreen(NavScreen):
    """What `hubwizard plan` prints, as a tree to browse."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("a", "apply", "Apply…"), Binding("r", "replan", "Re-plan")]

    class Event(Message):
        def __init__(self, event: Any) -> None:
            super().__init__()
            self.event = event

    class Done(Message):
        def __init__(self, code: int, error: str = "") -> None:
            super().__init__()
            self.code, self.error = code, error

    def __init__(self, autostart: bool = True) -> None:
        super().__init__()
        self.autostart = autostart  # False: events are posted by a test or the screenshot script
        self.steps: dict[str, TreeNode] = {}
        self.code: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("planning: read-only checks on every host…", id="plan-status")
        yield Tree("plan", id="plan-tree")
        yield Static("", id="plan-detail")
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def on_mount(self) -> None:
        self.sub_title = "plan review"
        tree = self.query_one(Tree)
        tree.show_root = False
        tree.focus()
        if self.autostart:
            self.run_plan()

    @work(thread=True, exclusive=True, group="plan")
    def run_plan(self) -> None:
        try:
            engine = self.app.engine(lambda e: self.post_message(self.Event(e)))
            summary = engine.run("plan")
        except Exception as exc:  # noqa: BLE001 - shown on the screen
            self.post_message(self.Done(2, str(exc)))
            return
        self.post_message(self.Done(summary.exit_code))

    def on_plan_screen_event(self, message: Event) -> None:
        e = message.event
        tree = self.query_one(Tree)
        if isinstance(e, StepStarted):
            step = next((s for s in self.app.session().steps if s.id == e.step), None)
            node = tree.root.add(Text(f"{e.step}: {e.title}"), expand=False)
            if step and step.description:
                node.add_leaf(Text(step.description.splitlines()[0], style="dim"))
            self.steps[e.step] = node
        elif isinstance(e, HostResult) and e.step in self.steps:
            colour = _STYLE.get(e.status, "white")
            label = Text.assemble((e.status, colour), f" {e.host}  {e.message}")
            host = self.steps[e.step].add(label, expand=bool(e.commands))
            for cmd in e.commands:
                host.add_leaf(Text(f"$ {cmd}"))
            if e.fix:
                host.add_leaf(Text(f"fix: {e.fix}"))
        elif isinstance(e, StepFinished) and e.step in self.steps:
            node = self.steps[e.step]
            node.set_label(Text.assemble((f"{e.status:>12}", _STYLE.get(e.status, "white")), "  ", node.label))
            if e.status in ("would-change", "failed", "unreachable"):
                node.expand()

    def on_plan_screen_done(self, message: Done) -> None:
        self.code = message.code
        status = self.query_one("#plan-status", Static)
        if message.error:
            status.update(Text.assemble(("plan failed: ", "bold red"), message.error))
        elif message.code == 0:
            status.update("plan done: [yellow]yellow[/] steps would change. [b]a[/b] applies them.")
        else:
            status.update("[b red]plan found problems[/] (see the red steps); fix them, then [b]r[/b] re-plans.")

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        """A command is often wider than the screen: the highlighted line is shown whole."""
        label = event.node.label
        self.query_one("#plan-detail", Static).update(label.plain if isinstance(label, Text) else str(label))

    def action_apply(self) -> None:
        self.app.open("run")

    def action_replan(self) -> None:
        self.query_one(Tree).clear()
        self.steps.clear()
        self.run_plan()
