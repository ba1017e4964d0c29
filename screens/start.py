"""The first screen: open a site file (new or existing) and see where its journal stands.

Resume is the journal's business (hubwizard.session.status_table): the table here shows
each step's state per host, done / failed / started / pending, and the next screens pick up
from there because the engine skips what is done and still converged."""

from __future__ import annotations

from pathlib import Path

from hubwizard.screens.keys import NavScreen
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from hubwizard.core.errors import HubwizardError

_MARK = {"done": "done", "failed": "FAILED", "started": "started", "skipped": "skipped", "pending": "·"}


class StartScreen(NavScreen):
    """New site or resume: the site path, the journal, and where to go next."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("i", "go('inventory')", "Inventory"),
        Binding("s", "go('settings')", "Settings"),
        Binding("p", "go('plan')", "Plan"),
        Binding("a", "go('run')", "Apply…"),
        Binding("m", "go('monitor')", "Monitor"),
        Binding("d", "go('doctor')", "Doctor"),
        Binding("q", "back", "Quit"),
        Binding("escape", "back", "Quit", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="start"):
            yield Label("Site file", classes="label")
            with Horizontal(id="path-row"):
                path = str(self.app.site_path) if self.app.site_path else "site.toml"
                yield Input(path, id="path")
                yield Button("Open", id="open", variant="primary")
            yield Static("", id="summary")
            yield DataTable(id="journal", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def on_mount(self) -> None:
        self.sub_title = "start: a new site, or resume one"
        self.load()
        self.query_one("#journal", DataTable).focus()  # letters are commands; Tab reaches the path

    @on(Input.Submitted, "#path")
    @on(Button.Pressed, "#open")
    def _open(self) -> None:
        self.app.site_path = Path(self.query_one("#path", Input).value.strip() or "site.toml")
        self.app._session = None
        self.app._draft = None
        self.load()
        self.query_one("#journal", DataTable).focus()

    def load(self) -> None:
        """Show the journal of the chosen site, or say it is a new site."""
        summary = self.query_one("#summary", Static)
        table = self.query_one("#journal", DataTable)
        table.clear(columns=True)
        path = self.app.site_path
        if path is None or not Path(path).exists():
            summary.update(Text.assemble(("New site", "bold"), f": {path or 'site.toml'} does not exist yet.\n"
                                         "Press i to add the hub and nodes, then s for the settings."))
            return
        try:
            from hubwizard.session import status_table

            rows = status_table(self.app.session(reload=True))
        except HubwizardError as exc:
            summary.update(Text.assemble((f"{path} cannot be used:", "bold red"), f"\n{exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - a broken install must not kill the screen
            summary.update(Text(f"{path}: {type(exc).__name__}: {exc}", style="bold red"))
            return
        self.fill(table, rows)
        done = sum(1 for r in rows for h in r["hosts"].values() if h["state"] == "done")
        failed = [f"{r['id']}@{h}" for r in rows for h, v in r["hosts"].items() if v["state"] == "failed"]
        total = sum(len(r["hosts"]) for r in rows)
        text = Text.assemble((self.app.session().site.site.name, "bold"), f": {done}/{total} step-host pairs done")
        if failed:
            text.append(f", failed: {', '.join(failed[:3])}", style="bold red")
        text.append(". Press a to resume the install: done steps that still check out are skipped.")
        summary.update(text)

    @staticmethod
    def fill(table: DataTable, rows: list[dict]) -> None:
        hosts: list[str] = []
        for r in rows:
            hosts += [h for h in r["hosts"] if h not in hosts]
        table.add_columns("STEP", *[h.upper() for h in hosts])
        for r in rows:
            cells = [_MARK.get(r["hosts"][h]["state"], r["hosts"][h]["state"]) if h in r["hosts"] else ""
                     for h in hosts]
            table.add_row(r["id"], *cells, key=r["id"])

    def action_go(self, name: str) -> None:
        if name != "inventory" and (self.app.site_path is None or not Path(self.app.site_path).exists()):
            self.notify("no site file yet: start with the inventory (i)", severity="warning")
            return
        self.app.open(name)

    def on_screen_resume(self) -> None:
        self.load()
