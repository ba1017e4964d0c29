"""Modal dialogs: confirm an unknown host key, act on a failed step, confirm an action, read
advice, list the keys.

Each answers through ``dismiss(value)``; workers wait for that answer without touching
widgets (the app's ``ask`` bridges a thread to a modal)."""

from __future__ import annotations

from pathlib import Path
from typing import Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

CSS = Path(__file__).with_suffix(".tcss")
T = TypeVar("T")


class _ButtonsModal(ModalScreen[T], Generic[T]):
    """A dialog answered by a button or its key: the safe button has focus, its id is the answer."""

    CSS_PATH = CSS
    FOCUS = "no"

    def answer_for(self, button_id: str | None) -> T:
        """The value a button stands for (yes/no dialogs: True for "yes")."""
        return button_id == "yes"  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.query_one(f"#{self.FOCUS}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.answer_for(event.button.id))

    def action_answer(self, value: T) -> None:
        self.dismiss(value)


class HostKeyModal(_ButtonsModal[bool]):
    """An unknown SSH host key: trust it only when the admin compared the fingerprint."""

    BINDINGS = [Binding("y", "answer(True)", "Trust"), Binding("n,escape", "answer(False)", "Refuse")]

    def __init__(self, host: str, fingerprint: str) -> None:
        super().__init__()
        self.host, self.fingerprint = host, fingerprint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Unknown host key", classes="title")
            yield Static(Text.assemble((self.host, "bold"), " is not in known_hosts. It presents:"))
            yield Static(self.fingerprint, id="fingerprint", classes="mono")
            yield Static("Compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console.",
                         classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Trust (y)", id="yes", variant="warning")
                yield Button("Refuse (n)", id="no", variant="primary")


class FailureModal(_ButtonsModal[str]):
    """A step failed on a host: what, where, the output tail and the fix; Retry / Skip / Abort."""

    FOCUS = "retry"
    BINDINGS = [Binding("r", "answer('retry')", "Retry"), Binding("s", "answer('skip')", "Skip"),
                Binding("a,escape", "answer('abort')", "Abort")]

    def __init__(self, step: str, host: str, command: str, output_tail: str, fix: str | None,
                 message: str = "") -> None:
        super().__init__()
        self.step, self.host, self.command, self.tail, self.fix, self.message = (
            step, host, command, output_tail, fix, message)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error"):
            yield Label(f"Step {self.step} failed on {self.host}", classes="title")
            if self.message and self.message != f"failed: {self.command}":  # no command shown twice
                yield Static(self.message, markup=False)
            if self.command:
                yield Static(f"$ {self.command}", classes="mono", markup=False)
            with VerticalScroll(classes="tail"):
                yield Static(self.tail or "(no output)", id="tail", markup=False)
            yield Static(f"fix: {self.fix}" if self.fix else "no known fix for this output", id="fix",
                         classes="hint", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Retry (r)", id="retry", variant="primary")
                yield Button("Skip (s)", id="skip")
                yield Button("Abort (a)", id="abort", variant="error")

    def answer_for(self, button_id: str | None) -> str:
        return button_id or "abort"


class ConfirmModal(_ButtonsModal[bool]):
    """Yes/no before anything changes the cluster (drain, remove, a doctor fix)."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, body: str = "") -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title", markup=False)
            if self.body:
                with VerticalScroll(classes="tail"):
                    yield Static(self.body, classes="mono", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no", variant="primary")


class AskModal(ModalScreen[str | None]):
    """One value (the replica count of a scale): Enter accepts, Escape cancels."""

    CSS_PATH = CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", restrict: str | None = None) -> None:
        super().__init__()
        self.title_text, self.value, self.restrict = title, value, restrict

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title", markup=False)
            yield Input(self.value, restrict=self.restrict, id="value")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PassphraseModal(ModalScreen[str | None]):
    """A locked SSH key that nothing else could stand in for (no agent key was accepted): its
    passphrase, typed hidden; Escape gives up (the error then names `ssh-add KEY`)."""

    CSS_PATH = CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, host: str, path: str) -> None:
        super().__init__()
        self.host, self.path = host, path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("SSH key passphrase", classes="title")
            yield Static(Text.assemble("To log in to ", (self.host, "bold"), ": the key ", (self.path, "bold"),
                                       " needs its passphrase."), markup=False)
            yield Input(password=True, id="value")
            yield Static("Enter to go on, Esc to give up. Asked once per key and run; "
                         "`ssh-add KEY` in a terminal spares the question.", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class AdviceModal(ModalScreen[None]):
    """A fix that is advice only (no command to run): shown to read, nothing to confirm."""

    CSS_PATH = CSS
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title", markup=False)
            with VerticalScroll(classes="tail"):
                yield Static(self.body, id="advice", markup=False)
            yield Static("Nothing runs from here: do this on the host, then r re-checks.", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("OK (enter)", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpModal(ModalScreen[None]):
    """The keys of the screen below, `?` on every screen; any of Esc, q, ? closes it."""

    CSS_PATH = CSS
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str]], note: str = "") -> None:
        super().__init__()
        self.title_text, self.rows, self.note = title, rows, note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title", markup=False)
            yield DataTable(id="keys", classes="keys", cursor_type="none", show_header=False, zebra_stripes=True)
            if self.note:
                yield Static(self.note, classes="hint", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        table.add_columns("KEY", "ACTION")
        for keys, what in self.rows:
            table.add_row(Text(keys, style="bold"), Text(what))
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
