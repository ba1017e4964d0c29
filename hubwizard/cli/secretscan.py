"""Looks for secrets where they must never be, and says where without ever printing them.

The installer holds five kinds of secret: swarm join tokens (``SWMTKN-1-...``), the OAuth
client secret, the registry password, the sudo password and the hub API token. They may live
in the 0600 secrets file beside the site file, in environment variables, in Docker's own
stores on the hosts (Docker secrets, and ``~/.docker/config.json`` after ``docker login``),
and nowhere else. This module checks that promise after a run:

- locally: the site file, the state dir ``.hubwizard/NAME/`` (journal, logs), crash logs,
  and any captured output or folder the caller names (plan/render output, TUI log capture);
- on every host, over the site's own SSH connections: files under the usual places
  (``/etc``, ``/root``, ``/home``, ``/opt``, ``/srv``, ``/tmp``, ``/var/log``, the NFS export,
  container configs) and the host's systemd journal. The secret is handed to ``grep`` on
  stdin, so it never appears on a command line either;
- modes: the secrets file and Docker's credential store must be 0600.

Docker's credential store is the one exception: ``docker login`` must write the registry
password there (base64, 0600); the report lists it as excepted, never silently.

Usable from tests (``scan_site``) and as ``python -m hubwizard.cli.secretscan -c SITE``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hubwizard.core.secrets import KNOWN, secrets_path

JOIN_TOKEN = re.compile(r"SWMTKN-1-[0-9a-z]{20,}-[0-9a-z]{10,}")
MIN_LEN = 6  # shorter values would match everywhere; they are reported as not scannable
MAX_FILE = 64 * 1024 * 1024

HOST_PATHS = ("/etc", "/root", "/home", "/opt", "/srv", "/tmp", "/var/tmp", "/var/log", "/usr/local",
              "/var/lib/hubwizard", "/var/lib/docker/containers")
# Docker's own credential store: `docker login` writes the registry password here by design.
DOCKER_CREDENTIALS = re.compile(r"^/(root|home/[^/]+)/\.docker/config\.json$")
# Docker's secrets store: a Docker secret materialised for a container (tmpfs, mode 0444 inside).
DOCKER_SECRET_MOUNT = re.compile(r"^/var/lib/docker/containers/[0-9a-f]{12,}/mounts/secrets/[^/]+$")


@dataclass(frozen=True)
class Finding:
    """One place a secret was found, or a secret file with a bad mode."""

    where: str  # "local", a host name, or "output"
    path: str  # file path, or the label of a captured output
    secret: str  # which secret (its name, never its value) or "join token"
    line: int = 0
    problem: str = "leak"  # leak | mode

    def __str__(self) -> str:
        at = f"{self.path}:{self.line}" if self.line else self.path
        if self.problem == "mode":
            return f"{self.where}: {at}: {self.secret}"
        return f"{self.where}: {at}: contains the {self.secret}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    excepted: list[str] = field(default_factory=list)  # stores allowed to hold a secret, and why
    notes: list[str] = field(default_factory=list)
    scanned: int = 0  # files and outputs looked at

    @property
    def clean(self) -> bool:
        return not self.findings

    def extend(self, other: Report) -> None:
        self.findings += other.findings
        self.excepted += other.excepted
        self.notes += other.notes
        self.scanned += other.scanned

    def as_dict(self) -> dict:
        return {"clean": self.clean, "findings": [asdict(f) for f in self.findings], "excepted": self.excepted,
                "notes": self.notes, "scanned": self.scanned}


class Scanner:
    """Finds known secret values and join-token shapes in text."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = {n: v for n, v in secrets.items() if v and len(v) >= MIN_LEN}
        self.too_short = sorted(n for n, v in secrets.items() if v and len(v) < MIN_LEN)

    def text(self, text: str, where: str, path: str) -> list[Finding]:
        found: list[Finding] = []
        for lineno, line in enumerate(text.splitlines() or [text], 1):
            for name, value in self.secrets.items():
                if value in line:
                    found.append(Finding(where, path, name, lineno))
            if JOIN_TOKEN.search(line):
                found.append(Finding(where, path, "join token", lineno))
        return found

    def file(self, path: Path, where: str = "local") -> list[Finding]:
        try:
            if path.stat().st_size > MAX_FILE:
                return []
            data = path.read_bytes()
        except OSError:
            return []
        return self.text(data.decode("utf-8", "replace"), where, str(path))

    def tree(self, root: Path, skip: Iterable[Path] = (), where: str = "local") -> tuple[list[Finding], int]:
        skipped = {p.resolve() for p in skip}
        found: list[Finding] = []
        count = 0
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            if p.resolve() in skipped or p.is_symlink():
                continue
            count += 1
            found += self.file(p, where)
        return found, count


def known_secrets(site_path: str | Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every secret value the site uses: the secrets file, HUBWIZARD_<NAME> env vars, and ``extra``
    (values learnt at run time, such as join tokens, or a wrong password a test typed)."""
    import tomllib

    values: dict[str, str] = {}
    path = secrets_path(site_path)
    if path.exists():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        values.update({k: v for k, v in data.items() if isinstance(v, str)})
    for name in KNOWN:
        env = os.environ.get("HUBWIZARD_" + name.upper())
        if env:
            values.setdefault(name, env)
    values.update(extra or {})
    return values


def _mode_ok(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def scan_local(site_path: str | Path, scanner: Scanner, *, paths: Iterable[str | Path] = (),
               outputs: Mapping[str, str] | None = None, since: float = 0.0) -> Report:
    """The site file, its state dir, hubwizard crash logs (written after ``since``), named
    files/folders and captured outputs."""
    site = Path(site_path)
    report = Report()
    secret_file = secrets_path(site)
    if secret_file.exists() and not _mode_ok(secret_file):
        mode = stat.S_IMODE(secret_file.stat().st_mode)
        report.findings.append(Finding("local", str(secret_file), f"secrets file has mode {mode:o}, not 0600",
                                       problem="mode"))
    targets: list[Path] = [site, *(Path(p) for p in paths)]
    state = _state_dir(site)
    if state is not None:
        targets.append(state)
    targets += sorted(p for p in Path(tempfile.gettempdir()).glob("hubwizard-crash-*.log") if _mtime(p) >= since)
    for target in targets:
        if target.exists():
            found, count = scanner.tree(target, skip=[secret_file])
            report.findings += found
            report.scanned += count
    for label, text in (outputs or {}).items():
        report.findings += scanner.text(text, "output", label)
        report.scanned += 1
    return report


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _state_dir(site: Path) -> Path | None:
    """``.hubwizard/NAME`` beside the site file (NAME from the site file, read leniently)."""
    try:
        import tomllib

        name = tomllib.loads(site.read_text(encoding="utf-8"))["site"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from hubwizard.core.journal import journal_path

    return journal_path(site, str(name)).parent


def _grep_files(paths: Iterable[str]) -> str:
    """Files under PATHS containing the pattern given on stdin (never on the command line)."""
    roots = " ".join(shlex.quote(p) for p in paths)
    return f"grep -rlsIF --exclude-dir=proc -f /dev/stdin -- {roots} 2>/dev/null || true"


_GREP_JOURNAL = ("exec 3<&0; command -v journalctl >/dev/null 2>&1 || exit 0; "
                 "journalctl -q --no-pager -o cat 2>/dev/null | grep -cF -f /dev/fd/3 || true")
_GREP_TOKENS = "grep -rlsIE --exclude-dir=proc -- 'SWMTKN-1-[0-9a-z]{20,}-[0-9a-z]{10,}' "


def scan_host(transport, host: str, scanner: Scanner, paths: Iterable[str] = HOST_PATHS) -> Report:
    """Files on one host holding a secret (outside Docker's credential store), and its journal."""
    report = Report()
    roots = list(paths)
    for name, value in scanner.secrets.items():
        res = transport.run(_grep_files(roots), sudo=True, stdin=value + "\n", timeout=300)
        for path in res.stdout.splitlines():
            if DOCKER_CREDENTIALS.match(path):
                report.excepted.append(_credential_store(transport, host, path, name, report))
            elif DOCKER_SECRET_MOUNT.match(path):
                report.excepted.append(f"{host}:{path}: a Docker secret mounted into a container (Docker's secrets "
                                       f"store) holds the {name}")
            elif path:
                report.findings.append(Finding(host, path, name))
        res = transport.run(_GREP_JOURNAL, sudo=True, stdin=value + "\n", timeout=300)
        if res.stdout.strip().isdigit() and int(res.stdout.strip()) > 0:
            report.findings.append(Finding(host, "systemd journal", name, int(res.stdout.strip())))
    cmd = _GREP_TOKENS + " ".join(shlex.quote(p) for p in roots) + " 2>/dev/null || true"
    res = transport.run(cmd, sudo=True, timeout=300)
    for path in res.stdout.splitlines():
        if path and not DOCKER_CREDENTIALS.match(path) and not DOCKER_SECRET_MOUNT.match(path):
            report.findings.append(Finding(host, path, "join token"))
    report.scanned += 1
    return report


def _credential_store(transport, host: str, path: str, name: str, report: Report) -> str:
    res = transport.run(f"stat -c %a {shlex.quote(path)}", sudo=True)
    mode = res.stdout.strip()
    if mode and int(mode, 8) & 0o077:
        report.findings.append(Finding(host, path, f"Docker credential store has mode {mode}, not 600", problem="mode"))
    return f"{host}:{path}: Docker's credential store (written by `docker login`) holds the {name}; mode {mode or '?'}"


def scan_hosts(site_path: str | Path, scanner: Scanner, *, accept_new_host_keys: bool = False) -> Report:
    """Every active host of the site, over the site's own SSH connections."""
    from hubwizard.core.errors import HubwizardError
    from hubwizard.core.secrets import load_secrets
    from hubwizard.remote.connections import Connections
    from hubwizard.session import open_site

    session = open_site(site_path, prompt=None)
    storage = session.site.storage.path
    paths = [*HOST_PATHS, storage] if storage not in HOST_PATHS else list(HOST_PATHS)
    report = Report()
    with Connections(session.site, load_secrets(site_path), accept_new_host_keys=accept_new_host_keys) as conns:
        for host in session.site.active_hosts:
            try:
                report.extend(scan_host(conns.get(host.name), host.name, scanner, paths))
            except HubwizardError as exc:
                report.notes.append(f"{host.name}: not scanned: {exc.message}")
    return report


def scan_site(site_path: str | Path, *, hosts: bool = False, paths: Iterable[str | Path] = (),
              outputs: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None,
              since: float = 0.0) -> Report:
    """Local scan, plus the hosts when ``hosts``; ``extra`` adds secret values learnt elsewhere;
    ``since`` (a time.time()) limits crash logs to those of this session's runs."""
    scanner = Scanner(known_secrets(site_path, extra))
    report = scan_local(site_path, scanner, paths=paths, outputs=outputs, since=since)
    if scanner.too_short:
        report.notes.append(f"too short to scan reliably (< {MIN_LEN} chars): {', '.join(scanner.too_short)}")
    if not scanner.secrets:
        report.notes.append("no secret values known: only join-token shapes were looked for")
    if hosts:
        report.extend(scan_hosts(site_path, scanner))
    return report


def main(argv: list[str] | None = None) -> int:
    """Exit 0: nothing found; 1: a secret where it must not be (or a bad mode); 2: bad input."""
    p = argparse.ArgumentParser(prog="python -m hubwizard.cli.secretscan", description=__doc__.splitlines()[0])
    p.add_argument("-c", "--config", required=True, metavar="SITE")
    p.add_argument("--no-hosts", action="store_true", help="scan only this machine's files")
    p.add_argument("--path", action="append", default=[], metavar="FILE_OR_DIR",
                   help="also scan this file or folder (render output, a log capture); repeatable")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from hubwizard.core.errors import HubwizardError

    if not Path(args.config).exists():
        print(f"secretscan: {args.config}: no such site file", file=sys.stderr)
        return 2
    try:
        report = scan_site(args.config, hosts=not args.no_hosts, paths=args.path)
    except HubwizardError as exc:
        print(f"secretscan: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for f in report.findings:
            print(f"FOUND  {f}")
        for e in report.excepted:
            print(f"excepted  {e}")
        for n in report.notes:
            print(f"note  {n}")
        print(f"secretscan: {len(report.findings)} finding(s) in {report.scanned} file(s)/output(s) and host(s)")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
