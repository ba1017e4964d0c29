"""The keys every screen shares, as k9s and lazydocker have them: `q`/Esc go back (and quit from
the first screen), `?` lists the screen's keys. Cluster-changing actions sit on capital letters
and always ask first, so a lowercase key never changes anything by mistake."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

BACK = [Binding("question_mark", "app.help", "Keys"),  # first, so the footer always shows it
        Binding("f1", "app.help", "Keys", priority=True),  # shown when a text field takes `?`
        Binding("escape", "back", "Back"), Binding("q", "back", "Back", show=False)]


_GENERIC = {"focus_next", "focus_previous", "screen.copy_text", "command_palette"}


def go_back(app: App) -> None:
    """Pop the screen; from the first screen (the stand-alone monitor too) quit."""
    if len(app.screen_stack) <= 2:  # Textual's default screen + the first one
        app.exit()
    else:
        app.pop_screen()


class NavScreen(Screen):
    """A screen with the shared keys; subclasses add theirs (and may override `back`)."""

    BINDINGS = BACK
    HELP = ""  # what the keys do not say (Enter on a row, ...), shown under them by `?`

    def action_back(self) -> None:
        go_back(self.app)


def help_rows(screen: Screen, app: App) -> list[tuple[str, str]]:
    """(keys, what they do) for `screen` then the app, one row per action: `esc / q  Back`.
    A key the screen binds hides the app's binding of that key, as Textual resolves it."""
    rows: dict[tuple[str, str], list[str]] = {}
    taken: set[str] = set()
    for node in (screen, app):
        mine: set[str] = set()
        for key, bindings in node._bindings.key_to_bindings.items():
            if key in taken or key.startswith("super+"):
                continue
            mine.add(key)
            for b in bindings:
                if b.description:
                    shown = b.key_display or app.get_key_display(b)
                    keys = rows.setdefault((b.action.removeprefix("app."), b.description), [])
                    if shown not in keys:
                        keys.append(shown)
        taken |= mine
    out = [(" / ".join(keys), description) for (action, description), keys in rows.items()]
    generic = [row for row, (action, _) in zip(out, rows, strict=True) if action in _GENERIC]
    return [row for row in out if row not in generic] + generic  # the screen's own keys first

