"""Doctor: every troubleshooting check of hubwizard.doctor.model with its diagnosis; a fix runs
only after the admin confirmed it, with its commands shown first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubwizard.screens.keys import NavScreen
from hubwizard.screens.modals import AdviceModal, ConfirmModal
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static


def _verdict(d: Any) -> Text:
    if d.skipped:
        return Text("cannot check", style="dim")
    return Text("ok", style="green") if d.ok else Text("PROBLEM", style="bold red")


class DoctorScreen(NavScreen):
    """The checks, their verdicts, and the fixes on offer."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("f", "fix", "Fix…"), Binding("r", "rerun", "Re-check")]

    class Diagnosed(Message):
        def __init__(self, diagnoses: list[Any], error: str = "") -> None:
            super().__init__()
            self.diagnoses, self.error = diagnoses, error

    class Fixed(Message):
        def __init__(self, index: int, diagnosis: Any) -> None:
            super().__init__()
            self.index, self.diagnosis = index, diagnosis

    def __init__(self, autostart: bool = True) -> None:
        super().__init__()
        self.autostart = autostart  # False: events are posted by a test or the screenshot script
        self.diagnoses: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("running the checks…", id="doctor-status")
        yield DataTable(id="checks", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail")
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def on_mount(self) -> None:
        self.sub_title = "doctor"
        table = self.query_one("#checks", DataTable)
        table.add_columns("CHECK", "HOST", "VERDICT", "SUMMARY")
        table.focus()
        if self.autostart:
            self.diagnose()

    @work(thread=True, exclusive=True, group="doctor")
    def diagnose(self) -> None:
        from hubwizard.doctor import model as doctor

        try:
            conns = self.app.connections()  # the site's connections, shared with plan and apply
            conns.forget_failures()  # a new diagnosis tries a host that was down again
            found = doctor.run_doctor(self.app.session(), conns)
        except Exception as exc:  # noqa: BLE001 - shown on the screen
            self.post_message(self.Diagnosed([], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Diagnosed(found))

    def on_doctor_screen_diagnosed(self, message: Diagnosed) -> None:
        self.diagnoses = list(message.diagnoses)
        status = self.query_one("#doctor-status", Static)
        if message.error:
            status.update(Text(f"doctor could not run: {message.error}", style="bold red"))
        else:
            bad = sum(1 for d in self.diagnoses if not d.ok and not d.skipped)
            status.update(f"{len(self.diagnoses)} checks, {bad} problems. Select a problem and press [b]f[/b] "
                          "to see its fix.")
        self.fill()

    def fill(self) -> None:
        table = self.query_one("#checks", DataTable)
        table.clear()
        for i, d in enumerate(self.diagnoses):
            table.add_row(d.check, d.host, _verdict(d), Text(d.summary), key=str(i))

    @on(DataTable.RowHighlighted)
    def _show(self, event: DataTable.RowHighlighted) -> None:
        d = self._current()
        if d is None:
            return
        text = d.detail or ""
        if d.fix_title:
            text += f"\nfix: {d.fix_title}"
        self.query_one("#detail", Static).update(Text(text.strip()))

    def _current(self) -> Any:
        table = self.query_one("#checks", DataTable)
        if not table.row_count or table.cursor_row < 0 or table.cursor_row >= len(self.diagnoses):
            return None
        return self.diagnoses[table.cursor_row]

    def action_fix(self) -> None:
        d = self._current()
        if d is None or d.ok or d.skipped:
            self.notify("select a problem first", severity="warning")
            return
        from hubwizard.doctor import model as doctor

        if not doctor.fixable(d):  # advice only: nothing would run, so there is nothing to say yes to
            advice = "\n\n".join(x for x in (d.fix_title, d.detail) if x) or "no known fix for this one"
            self.app.push_screen(AdviceModal(f"How to fix {d.check} on {d.host}", advice))
            return
        index = self.query_one("#checks", DataTable).cursor_row
        body = (d.fix_title or "") + "\n\n" + "\n".join(f"$ {c}" for c in d.fix_commands)
        self.app.push_screen(ConfirmModal(f"Fix {d.check} on {d.host}?", body.strip()),
                             lambda yes: self.fix(index, d) if yes else None)

    @work(thread=True, exclusive=True, group="doctor-fix")
    def fix(self, index: int, diagnosis: Any) -> None:
        """One fix at a time: fixes may touch the same host or service."""
        from hubwizard.doctor import model as doctor

        try:
            after = doctor.apply_fix(self.app.session(), self.app.connections(), diagnosis)
        except Exception as exc:  # noqa: BLE001
            after = type(diagnosis)(diagnosis.check, diagnosis.host, False, f"the fix failed: {exc}")
        self.post_message(self.Fixed(index, after))

    def on_doctor_screen_fixed(self, message: Fixed) -> None:
        self.diagnoses[message.index] = message.diagnosis
        self.fill()
        d = message.diagnosis
        self.notify(f"{d.check} on {d.host}: {'fixed' if d.ok else d.summary}", markup=False,
                    severity="information" if d.ok else "error")

    def action_rerun(self) -> None:
        self.query_one("#doctor-status", Static).update("running the checks…")
        self.diagnose()
