"""Growing and undoing a site: ``hubwizard add-node`` and ``hubwizard teardown``.

add-node runs only the steps marked ``scale_out`` (preflight, docker, join, storage client,
registry login, pre-pull) on the one new host, through the same engine as apply, so a node
added later gets exactly what the first ones got. A spare of the site file becomes active.

teardown undoes what apply made, in the reverse order, and says per host what it did: the
hub and users' services, the Docker secrets, the overlay network, the port guard, nginx's
site and the certificate, the registry logins, and swarm membership (nodes leave, the
manager removes them, the manager leaves last). User data on NFS stays unless --purge-data.
The journal is marked undone so a fresh apply re-checks every step.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubwizard.core.config import Host, Site, parse_site
from hubwizard.core.errors import ConfigError, UnreachableError
from hubwizard.core.events import Phase

Say = Callable[[str], None]


# --------------------------------------------------------------------------- add-node


def activate_spare(text: str, name: str) -> str:
    """The site file's text with ``spare = true`` removed from host ``name`` (comments kept)."""
    blocks = re.split(r"(?m)^(?=\s*\[)", text)
    out = []
    for block in blocks:
        if block.lstrip().startswith("[[hosts]]"):
            try:
                data = tomllib.loads(block.lstrip().removeprefix("[[hosts]]"))
            except tomllib.TOMLDecodeError:
                data = {}
            if data.get("name") == name:
                block = re.sub(r"(?m)^\s*spare\s*=\s*true\b.*\n?", "", block)
        out.append(block)
    return "".join(out)


def _confirm(args: Any, question: str) -> int | None:
    """None to go on; else the exit code (2: no TTY and no --yes; 0: the admin said no)."""
    if getattr(args, "yes", False):
        return None
    if not sys.stdin.isatty():
        print(f"hubwizard: bad input: {question.rstrip('?')} needs confirmation: run again with --yes",
              file=sys.stderr)
        return 2
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        print("nothing changed")
        return 0
    return None


def _printer(args: Any):
    from hubwizard.cli.report import HumanPrinter, JsonCollector

    return JsonCollector() if getattr(args, "json", False) else HumanPrinter(show_commands=True)


def add_node(session: Any, args: Any) -> int:
    """Bring one node of the site into the running cluster; exit code as the CLI's."""
    from hubwizard.session import open_site

    host = session.site.host(args.host)
    clone = _classic_clone(session, host, args)
    for line in clone.plan_lines() if clone else []:
        print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    what = "repair the clone as above and add" if clone else "add"
    code = _confirm(args, f"{what} {host.name} ({host.address}) to site {session.site.site.name}?")
    if code is not None:
        return code
    if host.spare:
        text = session.path.read_text(encoding="utf-8")
        new = activate_spare(text, host.name)
        parse_site(new, session.path)  # never write a site file that does not load
        tmp = session.path.with_name(session.path.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, session.path)
        print(f"{session.path}: {host.name} is no longer a spare")
        session = open_site(session.path, prompt=session.secrets.prompt)
    steps = [s for s in session.steps if s.scale_out]
    sink = _printer(args)
    engine = session.engine(sink, accept_new_host_keys=args.accept_new_host_keys)
    try:
        summary = engine.run("apply", hosts={host.name}, steps=steps)
        if summary.exit_code == 0:
            summary = engine.run("verify", hosts={host.name}, steps=steps)
    finally:
        engine.conns.close()
    if getattr(args, "json", False):
        print(sink.document("add-node", summary.exit_code))
    elif summary.exit_code == 0:
        print(f"\nadd-node: {host.name} is part of the cluster; `hubwizard verify -c {session.path}` lists it")
    return summary.exit_code


def _classic_clone(session: Any, host: Host, args: Any) -> Any:
    """Classic sites: whether the new node is a clone of another host's disk (same engine ID);
    None when not, or when a host cannot be reached (the steps then say so)."""
    if session.site.site.track != "classic":
        return None
    from hubwizard.actions import classic_clone

    conns = session.engine(lambda _e: None, accept_new_host_keys=args.accept_new_host_keys).conns
    try:
        return classic_clone.find_clone(conns, session.site, host.name)
    except UnreachableError:
        return None
    finally:
        conns.close()


# --------------------------------------------------------------------------- teardown


@dataclass
class Undo:
    """One thing teardown does on one host: done only when ``probe`` says it is there."""

    what: str
    act: str
    probe: str | None = None  # None: always act (idempotent commands)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: bool = False
    redact: Callable[[str], str] = lambda text: text  # the engine's redactor: no secret in a line

    def add(self, host: str, text: str, ok: bool = True) -> None:
        self.lines.append(self.redact(f"{host:<10} {'' if ok else 'FAILED: '}{text}"))
        self.failed |= not ok
        print(self.lines[-1], flush=True)


class Undoer:
    """Teardown's road to the hosts: the engine's (its connections, host lock, redacting event
    sink), so an undo never races a running apply and never prints a secret."""

    def __init__(self, engine: Any, report: Report) -> None:
        self.engine, self.report = engine, report
        report.redact = engine.redactor

    def context(self, host: Host, phase: Phase = "apply") -> Any:
        from hubwizard.engine.calls import StepContext

        e = self.engine
        return StepContext(STEP, host, e.conns.get(host.name), e.site, e.facts, e.secrets, e.state, e.emit,
                           e.conns, {}, phase)

    def undo(self, host: Host, items: list[Undo]) -> None:
        """Each item whose probe says it is there (read-only, no lock), then its act (locked)."""
        probe, act = self.context(host, "check"), self.context(host)
        for item in items:
            if item.probe is not None and not probe.run(item.probe, sudo=True).ok:
                continue
            res = act.run(item.act, sudo=True, timeout=600)
            self.report.add(host.name, item.what if res.ok else f"{item.what}: {res.output.splitlines()[-1:] or ''}",
                            res.ok)

    def call(self, host: Host, name: str, **args: Any) -> Any:
        """A registered call (the recipes' own swarm_leave, swarm_left) on ``host``."""
        from hubwizard.engine import calls

        return calls.get(name)(self.context(host), **args)


STEP = "teardown"  # the step name teardown's events carry


def hub_undo(site: Site, purge: bool = False) -> list[Undo]:
    """What the hub steps made on the hub, in reverse order."""
    from hubwizard.actions.hub_service import _GUARD6_RULE, _GUARD_RULE, DATA_VOLUME, PORT_GUARD_UNIT
    from hubwizard.actions.hub_web import ACME_CA_ON_HUB
    from hubwizard.core.render import HUB_SERVICE, PATHS

    users = ("for s in $(docker service ls -q); do docker service inspect \"$s\" --format "
             "'{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' | grep -q '^JUPYTERHUB_USER=' "
             "&& docker service rm \"$s\"; done >/dev/null")
    gone = ("for i in $(seq 60); do [ -z \"$(docker ps -q --filter label=com.docker.swarm.service.name)\" ] "
            "&& break; sleep 1; done")
    net = shlex.quote(site.hub.network)
    domain = shlex.quote(site.site.domain)
    unit = Path(PORT_GUARD_UNIT).name
    return [
        Undo(f"removed service {HUB_SERVICE}", f"docker service rm {HUB_SERVICE}",
             f"docker service inspect {HUB_SERVICE} >/dev/null 2>&1"),
        Undo("removed users' server services", users,
             "docker service ls -q 2>/dev/null | grep -q ."),
        Undo("waited for the services' containers to stop", gone,
             "docker ps -q --filter label=com.docker.swarm.service.name | grep -q ."),
        Undo("removed the hub's Docker secrets",
             "docker secret ls -q --filter label=org.hubwizard.secret | xargs -r docker secret rm >/dev/null",
             "docker secret ls -q --filter label=org.hubwizard.secret 2>/dev/null | grep -q ."),
        Undo(f"removed overlay network {site.hub.network}",
             f"for i in $(seq 30); do docker network rm {net} >/dev/null 2>&1 && exit 0; sleep 1; done; "
             f"docker network rm {net}",
             f"docker network inspect {net} >/dev/null 2>&1"),
        Undo(f"removed the port-8000 guard ({unit}, DOCKER-USER rule)",
             f"systemctl disable --now {unit} >/dev/null 2>&1; rm -f {PORT_GUARD_UNIT}; systemctl daemon-reload; "
             f"while iptables -D {_GUARD_RULE} 2>/dev/null; do :; done; "
             f"while ip6tables -D {_GUARD6_RULE} 2>/dev/null; do :; done; true",
             f"test -e {PORT_GUARD_UNIT} || iptables -C {_GUARD_RULE} 2>/dev/null"),
        Undo("removed nginx's JupyterHub site (default site back)",
             f"rm -f {PATHS['nginx_enabled']} {PATHS['nginx_site']} {PATHS['nginx_site_http']}; "
             "if [ -e /etc/nginx/sites-available/default ]; then "
             "ln -sfn /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default; fi; "
             "if systemctl is-active --quiet nginx; then nginx -t -q && systemctl reload nginx; fi",
             f"test -e {PATHS['nginx_enabled']} -o -e {PATHS['nginx_site']} -o -e {PATHS['nginx_site_http']}"),
        Undo(f"deleted the certificate of {site.site.domain} and its renewal hook",
             f"certbot delete --non-interactive --cert-name {domain} >/dev/null; "
             f"rm -f {PATHS['certbot_deploy_hook']} /etc/systemd/system/certbot.service.d/hubwizard-acme-ca.conf "
             f"{ACME_CA_ON_HUB}; systemctl daemon-reload",
             f"test -e /etc/letsencrypt/renewal/{domain}.conf -o -e {PATHS['certbot_deploy_hook']}"),
        Undo(f"removed the hub image's build context {PATHS['hub_build']}", f"rm -rf {PATHS['hub_build']}",
             f"test -e {PATHS['hub_build']}"),
    ] + ([] if purge else [
        Undo(f"kept volume {DATA_VOLUME} (the hub's database): --purge-data removes it", "true",
             f"docker volume inspect {DATA_VOLUME} >/dev/null 2>&1"),
    ])


def purge_undo(site: Site) -> tuple[list[Undo], list[Undo]]:
    """--purge-data: the hub's database volume (hub), the user folders (NFS server)."""
    from hubwizard.actions.hub_service import DATA_VOLUME

    path = shlex.quote(site.storage.path)
    return [
        Undo(f"removed volume {DATA_VOLUME} (the hub's database)", f"docker volume rm {DATA_VOLUME} >/dev/null",
             f"docker volume inspect {DATA_VOLUME} >/dev/null 2>&1"),
    ], [
        Undo(f"deleted every user folder under {site.storage.path}",
             f"find {path} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +", f"test -d {path}"),
    ]


def logout_undo(site: Site) -> Undo:
    reg = shlex.quote(site.registry.url)
    return Undo(f"logged out of registry {site.registry.url}", f"docker logout {reg} >/dev/null",
                f"grep -qF {reg} \"$HOME/.docker/config.json\" 2>/dev/null")


def nfs_guard_undo() -> Undo:
    """The NFS guard of step nfs-guard (every host): its unit and firewall chains."""
    from hubwizard.actions.nfs_guard import UNDO_PROBE, UNDO_SCRIPT, UNIT

    return Undo(f"removed the NFS guard ({UNIT}, its DOCKER-USER/INPUT rules)", UNDO_SCRIPT, UNDO_PROBE)


def swarm_guard_undo() -> Undo:
    """The swarm guard of step swarm-guard (every host): its unit and firewall chains."""
    from hubwizard.actions.swarm_guard import UNDO_SCRIPT, UNIT, UNIT_PATH

    return Undo(f"removed the swarm guard ({UNIT}, its INPUT/DOCKER-USER rules)", UNDO_SCRIPT,
                f"test -e {UNIT_PATH} || iptables -w -n -L HUBWIZARD-SWARM-IN >/dev/null 2>&1")


def leave_swarm(undoer: Undoer, site: Site) -> None:
    """Nodes leave (in parallel; each is removed from the manager's list), the manager last
    (that ends the swarm); then every host is checked to be in no swarm."""
    report = undoer.report
    with ThreadPoolExecutor(max_workers=max(1, len(site.nodes))) as pool:
        left = list(pool.map(lambda h: (h, undoer.call(h, "swarm_leave")), site.nodes))
    left.append((site.hub_host, undoer.call(site.hub_host, "swarm_leave", force=True)))
    for host, res in left:
        report.add(host.name, res.message if res.changed or not res.ok else f"{res.message}: nothing to leave",
                   res.ok)
    for host, res in left:
        if res.ok and not (still := undoer.call(host, "swarm_left")).ok:
            report.add(host.name, f"still in a swarm after leaving it: {still.message}", False)


def _mark_undone(session: Any) -> None:
    """Journal: every step done before is undone now, so a fresh apply re-runs what is needed."""
    import uuid

    run = "teardown-" + uuid.uuid4().hex[:8]
    for (step, host), entry in session.journal.latest().items():
        if entry.phase != "undone":
            session.journal.record(run, step, host, "undone", message="hubwizard teardown")


def teardown(session: Any, args: Any) -> int:
    """Undo the site; exit 0 when everything was undone, 1 if something failed, 3 unreachable."""
    from hubwizard.cli.report import HumanPrinter
    from hubwizard.core.render import Facts

    site: Site = session.site
    what = "and DELETE all user data" if args.purge_data else "(user data on NFS is kept)"
    code = _confirm(args, f"tear down site {site.site.name}: services, network, nginx, swarm {what}?")
    if code is not None:
        return code
    report = Report()
    # the facts from the site file: undoing needs no probe of internal addresses
    engine = session.engine(HumanPrinter(show_commands=False), accept_new_host_keys=args.accept_new_host_keys,
                            facts=Facts.offline(site))
    undoer = Undoer(engine, report)
    hub = site.hub_host
    try:
        undoer.undo(hub, hub_undo(site, args.purge_data))
        if args.purge_data:
            on_hub, on_nfs = purge_undo(site)
            undoer.undo(hub, on_hub)
            undoer.undo(site.nfs_host, on_nfs)
        if site.registry.username:
            for host in site.active_hosts:
                undoer.undo(host, [logout_undo(site)])
        for host in site.active_hosts:  # users' servers are gone: the NFS guard goes too
            undoer.undo(host, [nfs_guard_undo()])
        leave_swarm(undoer, site)
        for host in site.active_hosts:  # no swarm any more: its ports' guard goes too
            undoer.undo(host, [swarm_guard_undo()])
    except UnreachableError as exc:
        print(f"hubwizard: cannot reach a host: {engine.redactor(str(exc))}", file=sys.stderr)
        return 3
    except ConfigError:
        raise
    finally:
        engine.conns.close()
    _mark_undone(session)
    if report.failed:
        print("\nteardown: some steps failed (above); fix them and run teardown again")
        return 1
    kept = "user data removed" if args.purge_data else f"user data kept in {site.storage.path} on {site.nfs_host.name}"
    print(f"\nteardown: done; {kept}. Docker, NFS and nginx stay installed; `hubwizard apply` sets the site up again")
    return 0
