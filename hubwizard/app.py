"""The Textual app: the wizard (start, inventory, settings, plan, run, doctor) and the monitor.

It drives the same engine as the CLI and adds no logic of its own: every decision is made in
hubwizard.* modules; screens only show events and ask the admin. Blocking work runs in thread
workers; a worker that needs an answer (an unknown host key) waits on a modal through ``ask``.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import NoActiveWorker, get_current_worker

from hubwizard import monitor as monitor_model
from hubwizard.screens.modals import HostKeyModal, PassphraseModal

if TYPE_CHECKING:  # opened lazily: the app starts before any site is chosen
    from hubwizard.core.config import Site
    from hubwizard.core.events import Sink
    from hubwizard.core.secrets import Secrets
    from hubwizard.engine.runner import Engine
    from hubwizard.remote.connections import Connections
    from hubwizard.session import Session


_SITE_WORK = {"plan", "apply", "doctor", "doctor-fix", "monitor-poll", "cluster-poll"}  # workers on the connections


class HubwizardApp(App):
    """One app for the wizard and the monitor; ``start`` names the first screen."""

    TITLE = "hubwizard"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True, show=False),
                Binding("question_mark", "help", "Keys", show=False)]  # screens bind ? and F1 (screens/keys.py)

    def __init__(self, site_path: str | Path | None = None, *, start: str = "start", interval: float = 2.0,
                 source_factory: Callable[[], monitor_model.Source] | None = None,
                 accept_new_host_keys: bool = False, recipes_dir: str | None = None,
                 screen: Screen | None = None) -> None:
        super().__init__()
        self.first_screen = screen  # a prepared screen (tests, screenshots) instead of ``start``
        self.recipes_dir = recipes_dir
        self.site_path = Path(site_path) if site_path else None
        self.start = start
        self.interval = interval
        self.accept_new_host_keys = accept_new_host_keys
        self._source_factory = source_factory
        self._session: Session | None = None
        self._conns: Connections | None = None  # one per site, shared by every plan/apply/doctor/monitor
        self._model: monitor_model.Source | None = None  # the monitor's model on those connections
        self._conns_lock = threading.Lock()  # workers ask for the connections at once
        self._sink: Sink | None = None  # where "connecting to HOST…" goes: the latest engine's screen
        self._closers: list[Callable[[], None]] = []
        self._draft: dict[str, Any] | None = None

    # -- the site being edited (inventory, settings) -------------------------------
    def draft(self) -> dict[str, Any]:
        """The site as a dict the forms edit; read from the site file when there is one."""
        if self._draft is None:
            from hubwizard.core.config import load_site

            if self.site_path is not None and self.site_path.exists():
                site = load_site(self.site_path, check_files=False)  # a moved key file is fixed in the forms
                self._draft = site.model_dump(exclude_defaults=True)
                self._draft["site"] = site.site.model_dump(exclude_defaults=True) | {"name": site.site.name}
                self._draft["hosts"] = [h.model_dump(exclude_defaults=True) | {"name": h.name, "address": h.address,
                                                                                "role": h.role} for h in site.hosts]
            else:
                stem = (self.site_path.stem if self.site_path else "site").lower()
                name = "".join(c if c.isalnum() or c == "-" else "-" for c in stem).strip("-") or "site"
                self._draft = {"site": {"name": name if name[0].isalpha() else "site-" + name}, "hosts": []}
        return self._draft

    def save_draft(self) -> str | None:
        """Write the draft to the site file if the whole site validates; else the reason."""
        from hubwizard.core import sitefile

        error = sitefile.site_error(self.draft())
        if error:
            return error
        path = self.site_path or Path("site.toml")
        sitefile.write(path, self.draft())
        self.site_path = path
        self._session = None
        self.release_connections()  # the hosts or their addresses may have changed
        return None

    # -- session -----------------------------------------------------------------
    def session(self, reload: bool = False) -> Session:
        """The site opened as the CLI opens it (no terminal prompt: secrets come from the file/env)."""
        from hubwizard.session import open_site

        if self._session is None or reload:
            if self.site_path is None:
                raise FileNotFoundError("no site file chosen")
            self._session = open_site(self.site_path, recipes_dir=self.recipes_dir, prompt=None)
            self.release_connections()  # a reload is a return to the start screen or another site
        return self._session

    def site_and_secrets(self) -> tuple[Site, Secrets]:
        """Site and secrets only (the monitor needs no recipes nor journal)."""
        if self._session is not None:
            return self._session.site, self._session.secrets
        from hubwizard.core.config import load_site
        from hubwizard.core.secrets import load_secrets

        if self.site_path is None:
            raise FileNotFoundError("no site file chosen")
        return load_site(self.site_path), load_secrets(self.site_path)

    def engine(self, sink: Sink) -> Engine:
        """An Engine on the site's shared connections; unknown host keys are confirmed in a modal."""
        conns = self.connections()
        conns.forget_failures()  # a new run (Retry, Re-plan) tries a host that was down again
        self._sink = sink
        return self.session().engine(sink, connections=conns)

    def connections(self, site: Site | None = None) -> Connections:
        """The saved site's connections, one per host for the whole session (plan, apply, doctor
        and monitor share them; closed when the site is reloaded or the app exits). With ``site``
        (the inventory's unsaved hosts): fresh connections that the caller closes."""
        from hubwizard.core.secrets import Secrets, load_secrets
        from hubwizard.remote.connections import Connections

        if site is not None:
            path = self.site_path
            secrets = load_secrets(path) if path is not None and path.exists() else Secrets()
            return Connections(site, secrets, accept_new_host_keys=self.accept_new_host_keys,
                               confirm=self.confirm_host_key, ask_passphrase=self.ask_key_passphrase)
        with self._conns_lock:
            if self._conns is None:
                site, secrets = self.site_and_secrets()
                self._conns = Connections(site, secrets, accept_new_host_keys=self.accept_new_host_keys,
                                          confirm=self.confirm_host_key, on_connecting=self._connecting,
                                          ask_passphrase=self.ask_key_passphrase)
            return self._conns

    def _connecting(self, host: str, address: str, timeout: float) -> None:
        from hubwizard.core.events import Connecting

        if self._sink is not None:
            self._sink(Connecting(host, address, timeout))

    def release_connections(self) -> None:
        """Close the site's connections, unless a plan, apply or doctor worker still uses them
        (then they close when the app exits); the next run opens new ones."""
        with self._conns_lock:
            conns, self._conns, self._model = self._conns, None, None
        if conns is None:
            return
        busy = any(w.is_running and w.group in _SITE_WORK for w in self.workers)
        if busy:
            self._closers.append(conns.close)
        else:
            with contextlib.suppress(Exception):  # closing: nothing left to tell
                conns.close()

    def monitor_source(self) -> monitor_model.Source:
        """Called in a poll worker (the monitor, the run screen's cluster panel): the monitor's
        model on the hub's Docker API over the site's shared connections (may ask for a host key)."""
        if self._source_factory is not None:
            return self._source_factory()
        conns = self.connections()
        with self._conns_lock:
            model = self._model
        if model is None:
            site, secrets = self.site_and_secrets()
            model = monitor_model.model_on(conns, site, secrets)
            with self._conns_lock:
                if self._conns is conns:
                    self._model = model
        return model

    # -- a worker thread asks the admin --------------------------------------------
    def ask(self, screen: Screen) -> Any:
        """From a worker thread: show ``screen`` (a modal) and block until it is dismissed."""
        done = threading.Event()
        answer: dict[str, Any] = {}

        def got(value: Any) -> None:
            answer["value"] = value
            done.set()

        self.call_from_thread(self.push_screen, screen, got)
        try:
            worker = get_current_worker()
        except NoActiveWorker:  # a thread of the engine's pool (hosts probed/run in parallel) asks too
            worker = None
        while not done.wait(0.2):
            if (worker is not None and worker.is_cancelled) or not self.is_running:
                return None
        return answer.get("value")

    def confirm_host_key(self, host: str, fingerprint: str) -> bool:
        return bool(self.ask(HostKeyModal(host, fingerprint)))

    def ask_key_passphrase(self, host: str, path: str) -> str | None:
        """A locked key's passphrase, asked in a modal (only when no other key was accepted)."""
        return self.ask(PassphraseModal(host, path))

    # -- screens --------------------------------------------------------------------
    def action_help(self) -> None:
        """`?` on every screen: the keys of the screen on top, in a modal."""
        from hubwizard.screens.keys import help_rows
        from hubwizard.screens.modals import HelpModal

        screen = self.screen
        if isinstance(screen, HelpModal):
            return
        name = (getattr(screen, "sub_title", "") or type(screen).__name__.removesuffix("Screen").lower()).split(":")[0]
        note = " ".join(x for x in (getattr(screen, "HELP", ""), "Capital letters change the cluster and ask first. "
                                    "In a text field, F1 shows this help.") if x)
        self.push_screen(HelpModal(f"Keys: {name}", help_rows(screen, self), note))

    def make_screen(self, name: str) -> Screen:
        if name == "monitor":
            from hubwizard.screens.monitor import MonitorScreen

            try:
                title = self.site_and_secrets()[0].site.name
            except Exception:  # noqa: BLE001 - no site (tests, screenshots): no title
                title = self.site_path.stem if self.site_path else ""
            return MonitorScreen(self.monitor_source, interval=self.interval, title=title)
        if name == "doctor":
            from hubwizard.screens.doctor import DoctorScreen

            return DoctorScreen()
        if name == "inventory":
            from hubwizard.screens.inventory import InventoryScreen

            return InventoryScreen()
        if name == "settings":
            from hubwizard.screens.settings import SettingsScreen

            return SettingsScreen()
        if name == "plan":
            from hubwizard.screens.plan import PlanScreen

            return PlanScreen()
        if name == "run":
            from hubwizard.screens.run import RunScreen

            return RunScreen()
        from hubwizard.screens.start import StartScreen

        return StartScreen()

    def open(self, name: str) -> None:
        self.push_screen(self.make_screen(name))

    def on_mount(self) -> None:
        self.push_screen(self.first_screen or self.make_screen(self.start))

    def on_unmount(self) -> None:
        self.release_connections()
        for close in self._closers:
            with contextlib.suppress(Exception):  # closing on exit: nothing left to tell
                close()


def run_monitor(args: argparse.Namespace) -> int:
    """`hubwizard monitor -c SITE`: the monitor screen alone."""
    from hubwizard.core.config import load_site
    from hubwizard.core.secrets import load_secrets

    load_site(args.config)  # bad input fails here with exit code 2, before the screen
    load_secrets(args.config)
    app = HubwizardApp(args.config, start="monitor", interval=max(0.2, args.interval),
                       accept_new_host_keys=getattr(args, "accept_new_host_keys", False),
                       recipes_dir=getattr(args, "recipes", None))
    app.run()
    return 0


def run_wizard(args: argparse.Namespace) -> int:
    """`hubwizard [wizard] [-c SITE]`: a new site, or resume one from its journal."""
    app = HubwizardApp(getattr(args, "config", None), start="start", recipes_dir=getattr(args, "recipes", None))
    app.run()
    return 0
