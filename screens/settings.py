"""Settings: domain, e-mail, login provider, storage, quotas, images, registry, backups.

The questions are hubwizard.core.sitefile.QUESTIONS (the very list `hubwizard init` asks), and each
answer is checked as it is typed by the site file's own pydantic models; Save writes the
site file only when the whole site validates (secrets go to the 0600 secrets file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubwizard.screens.keys import NavScreen
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Label, Select, Static, Switch

from hubwizard.core import sitefile
from hubwizard.core.sitefile import Question


def _wid(q: Question) -> str:
    return f"q-{q.section}-{q.key}"


class SettingsScreen(NavScreen):
    """One form for the site's settings, validated as typed."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("ctrl+s", "save", "Save", priority=True)]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            for q in sitefile.QUESTIONS:
                with Horizontal(classes="row", id=f"row-{q.section}-{q.key}"):
                    yield Label(q.label, classes="label")
                    yield self._widget(q)
                yield Static("", classes="error", id=f"err-{q.section}-{q.key}")
        yield Static("", id="verdict")
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def _widget(self, q: Question) -> Widget:
        draft = self.app.draft()
        value = draft.get(q.section, {}).get(q.key, sitefile.default_of(q))
        if q.kind == "choice":
            return Select([(c, c) for c in q.choices], value=value, allow_blank=False, id=_wid(q))
        if q.kind == "bool":
            return Switch(bool(value), id=_wid(q))
        return Input(sitefile.shown(q, value), password=q.kind == "secret", id=_wid(q), classes="answer")

    def on_mount(self) -> None:
        self.sub_title = "settings"
        self._visibility()
        self.query_one("#form").children[0].query_one(Input).focus()

    def question(self, widget_id: str | None) -> Question | None:
        return next((q for q in sitefile.QUESTIONS if _wid(q) == widget_id), None)

    def _visibility(self) -> None:
        draft = self.app.draft()
        for q in sitefile.QUESTIONS:
            self.query_one(f"#row-{q.section}-{q.key}").display = sitefile.asked(q, draft)

    def _answer(self, q: Question, value: Any) -> None:
        draft = self.app.draft()
        if isinstance(value, str):
            value = value.strip()
        error = sitefile.answer_error(q, value, draft)
        err = self.query_one(f"#err-{q.section}-{q.key}", Static)
        err.update(Text(f"{q.key}: {error}") if error else "")
        err.display = bool(error)
        self.query_one(f"#{_wid(q)}").set_class(bool(error), "invalid")
        key = f"{q.section}.{q.key}"
        if error:
            self.errors[key] = error
            return
        self.errors.pop(key, None)
        sitefile.set_answer(draft, q, value, self.secrets)
        self._visibility()

    @on(Input.Changed, ".answer")
    def _typed(self, event: Input.Changed) -> None:
        q = self.question(event.input.id)
        if q:
            self._answer(q, event.value)

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        q = self.question(event.select.id)
        if q:
            self._answer(q, event.value)

    @on(Switch.Changed)
    def _switched(self, event: Switch.Changed) -> None:
        q = self.question(event.switch.id)
        if q:
            self._answer(q, event.value)

    def action_save(self) -> None:
        verdict = self.query_one("#verdict", Static)
        if self.errors:
            verdict.update(Text("not saved: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()), style="red"))
            return
        error = self.app.save_draft()
        if error:
            verdict.update(Text(f"not saved: {error}", style="red"))
            return
        made = sitefile.generated_secrets(self.app.site_path, self.app.draft())
        if self.secrets or made:
            from hubwizard.core.secrets import write_secrets

            write_secrets(self.app.site_path, self.secrets | made)
        said = f"saved {self.app.site_path}" + ("; made backup_password in the secrets file: keep a copy of it"
                                                if made else "")
        verdict.update(Text(said, style="green"))
        self.notify(said, markup=False)
