"""Inventory: the hub and the nodes, each probed live over SSH.

A probe connects exactly as the engine will (same Connections, same host-key policy: an
unknown key is shown as a fingerprint in a modal), then reads sudo, OS, Docker, CPUs, memory
and disk (hubwizard.remote.hostprobe). Fields are checked as typed with the site file's own rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubwizard.screens.keys import NavScreen
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from hubwizard.core import sitefile
from hubwizard.remote.hostprobe import HostReport, probe

# (key, label, placeholder): placeholders read as hints, never as values already filled in
FIELDS = (("name", "Name", "e.g. node1"), ("address", "Address", "e.g. 203.0.113.10 or an ssh alias"),
          ("user", "SSH user", "default root"), ("port", "Port", "default 22"),
          ("jump", "Jump host", "e.g. hub (optional)"))
ROWS = (("name", "address", "role"), ("user", "port", "jump", "add"))
COLUMNS = ("NAME", "ADDRESS", "ROLE", "REACH", "SUDO", "OS", "DOCKER", "CPU", "MEMORY", "DISK FREE")


class InventoryScreen(NavScreen):
    """Add hosts, probe them, save them into the site file."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("ctrl+a", "add", "Add host", priority=True),  # also from a field (Home goes to its start)
        Binding("ctrl+o", "probe", "Probe selected"),
        Binding("ctrl+r", "probe_all", "Probe all"),
        Binding("delete", "remove", "Remove host (in the table)"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    class Probed(Message):
        def __init__(self, report: HostReport) -> None:
            super().__init__()
            self.report = report

    def __init__(self) -> None:
        super().__init__()
        self.reports: dict[str, HostReport] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="inventory"):
            yield DataTable(id="hosts", cursor_type="row", zebra_stripes=True)
            with Vertical(id="form"):
                for row in ROWS:
                    with Horizontal(classes="form-row"):
                        for key in row:
                            yield from self._field(key)
            yield Static("", id="error")
        yield Footer(show_command_palette=False)  # ctrl+p still works; ? lists it

    def _field(self, key: str) -> ComposeResult:
        """A labelled field: the label above, the input below (one column of the form)."""
        spec = {k: (label, hint) for k, label, hint in FIELDS}
        with Vertical(classes=f"cell cell-{key}"):
            if key == "add":
                yield Label(" ", classes="field-label")
                yield Button("Add", id="add", variant="primary")
            elif key == "role":
                yield Label("Role", classes="field-label")
                yield Select([("hub", "hub"), ("node", "node"), ("nfs", "nfs")], value="node", allow_blank=False,
                             id="f-role")
            else:
                label, hint = spec[key]
                yield Label(label, classes="field-label")
                yield Input(placeholder=hint, id=f"f-{key}", classes=f"field {key}",
                            restrict=r"[0-9]*" if key == "port" else None)

    def on_mount(self) -> None:
        self.sub_title = "inventory: hub and nodes"
        table = self.query_one("#hosts", DataTable)
        table.add_columns(*COLUMNS)
        if not self.hosts:
            self.query_one("#f-name", Input).value = "hub"
            self.query_one("#f-role", Select).value = "hub"
        self.refresh_table()
        self.query_one("#f-name", Input).focus()

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return self.app.draft().setdefault("hosts", [])

    def refresh_table(self) -> None:
        table = self.query_one("#hosts", DataTable)
        table.clear()
        for h in self.hosts:
            report = self.reports.get(h["name"])
            cells = report.cells() if report else ("?",) + ("",) * 6
            table.add_row(h["name"], h["address"], h["role"], *cells, key=h["name"])

    # -- the form, validated as typed -------------------------------------------------
    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.query_one("#f-role", Select).value}
        for key, _label, _hint in FIELDS:
            text = self.query_one(f"#f-{key}", Input).value.strip()
            if text:
                out[key] = int(text) if key == "port" and text.isdigit() else text
        return out

    @on(Input.Changed, ".field")
    def _typed(self, event: Input.Changed) -> None:
        key = (event.input.id or "").removeprefix("f-")
        value: Any = event.value.strip()
        if key == "port" and value.isdigit():
            value = int(value)
        error = sitefile.field_error("hosts", key, value, required=("name", "address")) if value != "" else None
        event.input.set_class(bool(error), "invalid")
        self.query_one("#error", Static).update(Text(f"{key}: {error}", style="red") if error else "")

    @on(Button.Pressed, "#add")
    def _add_pressed(self) -> None:
        self.action_add()

    @on(Input.Submitted, ".field")
    def _submitted(self) -> None:
        self.action_add()

    def action_add(self) -> None:
        host = self.values()
        error = sitefile.section_error("hosts", host)
        names = [h["name"] for h in self.hosts]
        if not error and host["name"] in names:
            error = f"a host named {host['name']!r} exists already"
        if not error and host.get("jump") and host["jump"] not in names:
            error = f"jump host {host['jump']!r} is not in the inventory yet"
        if error:
            self.query_one("#error", Static).update(Text(error, style="red"))
            return
        self.hosts.append(host)
        for key, _label, _hint in FIELDS:
            self.query_one(f"#f-{key}", Input).value = ""
        self.query_one("#f-role", Select).value = "node"
        self.query_one("#error", Static).update(Text(f"added {host['name']}; ctrl+o probes it again, ctrl+s saves"))
        self.refresh_table()
        self.probe_host(host["name"])

    def action_remove(self) -> None:
        name = self._selected()
        if name:
            self.hosts[:] = [h for h in self.hosts if h["name"] != name]
            self.reports.pop(name, None)
            self.refresh_table()

    def _selected(self) -> str | None:
        table = self.query_one("#hosts", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # -- probing ---------------------------------------------------------------------
    def action_probe(self) -> None:
        name = self._selected()
        if name:
            self.probe_host(name)

    def action_probe_all(self) -> None:
        for h in self.hosts:
            self.probe_host(h["name"])

    def probe_site(self) -> Any:
        """A Site holding the inventory, so the probe connects exactly as the engine will."""
        from hubwizard.core.config import Site

        draft = self.app.draft()
        data = {"site": {"name": "probe", "domain": "probe.invalid", "email": "probe@probe.invalid"},
                "hosts": self.hosts, "ssh": draft.get("ssh", {}),
                "oauth": {"provider": "dummy", "i_understand_anyone_can_log_in": True}}  # never written: probes only
        if not any(h["role"] == "hub" for h in self.hosts):
            data["hosts"] = [*self.hosts, {"name": "zz-probe-hub", "address": "127.0.0.1", "role": "hub"}]
        return Site.model_validate(data)

    @work(thread=True, group="probe")
    def probe_host(self, name: str) -> None:
        """Not exclusive on purpose: "probe all" reads every host at once, each in its own worker."""
        try:
            conns = self.app.connections(self.probe_site())
        except Exception as exc:  # noqa: BLE001 - e.g. the inventory does not validate yet
            self.post_message(self.Probed(HostReport(name, False, error=str(exc).splitlines()[0])))
            return
        try:
            self.post_message(self.Probed(probe(conns, name)))
        finally:
            conns.close()

    def on_inventory_screen_probed(self, message: Probed) -> None:
        r = message.report
        self.reports[r.host] = r
        self.refresh_table()
        if not r.reachable:
            self.query_one("#error", Static).update(Text(f"{r.host}: {r.error}" + (f"\nfix: {r.fix}" if r.fix else ""),
                                                         style="red"))
        elif not r.sudo:
            self.query_one("#error", Static).update(Text(f"{r.host}: sudo needs a password or is missing",
                                                         style="yellow"))

    # -- save -----------------------------------------------------------------------
    def action_save(self) -> None:
        error = self.app.save_draft()
        if error:
            self.query_one("#error", Static).update(Text(f"not saved: {error}\nthe settings (s on the start screen) "
                                                         "hold domain and e-mail", style="red"))
            self.app.open("settings") if "site." in error else None
            return
        self.notify(f"saved {self.app.site_path}", markup=False)
