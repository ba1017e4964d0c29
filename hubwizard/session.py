"""Everything a command needs for one site, opened in one place for the CLI and the TUI."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hubwizard.actions  # noqa: F401  (registers the calls recipes name)
from hubwizard.core.config import Site, load_site
from hubwizard.core.events import Sink
from hubwizard.core.journal import Journal, journal_path
from hubwizard.core.secrets import Secrets, load_secrets
from hubwizard.core.steps import Step, load_steps, parse_recipe

if TYPE_CHECKING:  # opened lazily: a command that never reaches a host loads no engine
    from hubwizard.core.render import Facts
    from hubwizard.engine.runner import Engine
    from hubwizard.remote.connections import Connections


def _tty_prompt(name: str) -> str:
    if not sys.stdin.isatty():
        return ""
    label = name.replace("_", " ") if name.isidentifier() else name  # a secret's name, or a sentence (SSH key passphrase)
    return getpass.getpass(f"{label} (not echoed, not stored): ")


@dataclass
class Session:
    """A loaded site: config, secrets, journal and steps; connections open lazily."""

    path: Path
    site: Site
    secrets: Secrets
    journal: Journal
    steps: list[Step]

    def engine(self, sink: Sink, *, accept_new_host_keys: bool = False,
               confirm: Callable[[str, str], bool] | None = None, connections: Connections | None = None,
               facts: Facts | None = None) -> Engine:
        """The site's engine; ``connections`` (and ``facts``) reuse what a caller already opened
        and probed (the doctor), else its own connections open lazily."""
        from hubwizard.core.events import Connecting
        from hubwizard.engine.runner import Engine
        from hubwizard.remote.connections import Connections

        conns = connections if connections is not None else Connections(
            self.site, self.secrets, accept_new_host_keys=accept_new_host_keys, confirm=confirm,
            on_connecting=lambda host, address, timeout: sink(Connecting(host, address, timeout)))
        return Engine(self.site, self.steps, conns, self.secrets, self.journal, sink, facts=facts)


def open_site(path: str | Path, *, recipes_dir: str | None = None,
              prompt: Callable[[str], str] | None = _tty_prompt) -> Session:
    """Load and validate everything local; raise ConfigError before any host is touched."""
    p = Path(path)
    site = load_site(p)
    secrets = load_secrets(p, prompt=prompt)
    if recipes_dir:
        steps: list[Step] = []
        for f in sorted(Path(recipes_dir).glob("*.yaml")):
            steps += parse_recipe(f.read_text(encoding="utf-8"), str(f))
        steps = sorted((s for s in steps if site.site.track in s.tracks), key=lambda s: (s.order, s.id))
    else:
        steps = load_steps(site.site.track)
    return Session(p, site, secrets, Journal(journal_path(p, site.site.name)), steps)


def status_table(session: Session) -> list[dict]:
    """Journal state per step and host: done / failed / started / pending."""
    latest = session.journal.latest()
    rows = []
    for step in session.steps:
        hosts = {}
        for h in session.site.targets(step.targets):
            e = latest.get((step.id, h.name))
            hosts[h.name] = {"state": e.phase if e else "pending", "at": e.ts if e else None,
                             "message": e.message if e else ""}
        rows.append({"id": step.id, "title": step.title, "hosts": hosts})
    return rows
