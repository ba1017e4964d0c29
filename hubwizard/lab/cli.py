"""`hubwizard lab up|down|status`: the command line of the local rehearsal cluster.

Only argparse and the stdlib are imported at module level so `hubwizard --help` stays fast;
docker and the lab modules load inside run().
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _users(names: tuple[str, ...]) -> str:
    """A list of user names for one line: a class of 50 is shown by its first and last."""
    return ", ".join(names) if len(names) <= 4 else f"{names[0]} .. {names[-1]}"


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 1 to 65535")
    return value


def register(subparsers: Any) -> None:
    """Add the `lab` subcommand (with up, down, status) to the main CLI's subparsers."""
    lab = subparsers.add_parser(
        "lab",
        help="local rehearsal cluster (machines with sshd + dockerd, a registry, an ACME CA)",
        description="A local rehearsal cluster: containers that boot like Debian servers, plus a "
        "registry and an ACME server, and a site file pointing at them.",
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="up|down|status")
    sub.required = True
    p_up = sub.add_parser("up", help="bring a lab up (or reuse the one of the same name and shape)")
    p_up.add_argument("--nodes", type=_positive, default=2, help="worker machines (default 2)")
    p_up.add_argument("--spares", type=_positive, default=0, help="machines up but marked spare (for add-node)")
    p_up.add_argument("--nfs-host", action="store_true",
                      help="one more machine, \"nfs\", serves users' folders (storage.server) instead of the hub")
    p_up.add_argument("--vm", action="store_true", help="machines as qemu VMs with a real kernel (kernel NFS, XFS quotas)")
    p_up.add_argument("--track", choices=("swarm-mode", "classic"), default="swarm-mode",
                      help="with --vm: the site file's track; classic exports the hub's /home, autofs on the nodes")
    p_up.add_argument("-o", "--output", metavar="SITE", help="site file to write (default ./NAME.toml)")
    p_up.add_argument("--name", default="lab", help="lab name; labs of different names run side by side")
    p_up.add_argument("--user", default="root", help="admin user (non-root gets sudo)")
    p_up.add_argument("--sudo-password", action="store_true", help="sudo asks a password (in SITE.secrets.toml)")
    p_up.add_argument("--ssh-port", type=_port, default=22, help="port sshd listens on")
    p_up.add_argument("--jump", action="store_true", help="nodes accept SSH only from the hub (ProxyJump)")
    p_up.add_argument("--with-docker", action="store_true", help="machines with docker.io installed and running")
    p_up.add_argument("--base-image", metavar="IMG", help="a pullable Debian bookworm image instead of debootstrap")
    p_up.add_argument("--mirror", metavar="URL", help="Debian mirror for the images (default: this machine's apt sources)")
    p_up.add_argument(
        "--dummy-login",
        action="store_true",
        help="the open dummy login (anyone as anyone) instead of the lab's OpenID Connect provider",
    )
    p_up.add_argument("--students", type=_positive, default=2,
                      help="student1..studentN at the lab's OpenID provider, allowed on the hub (default 2)")
    p_down = sub.add_parser("down", help="remove every container, volume and network of a lab")
    p_down.add_argument("--name", default="lab")
    p_status = sub.add_parser("status", help="machines, IPs, roles and health of a lab (exit 1 unless all healthy)")
    p_status.add_argument("--name", default="lab")
    p_status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    lab.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `lab up|down|status`; return the exit code (0 ok, 1 failed, 2 bad input)."""
    from hubwizard.core.errors import HubwizardError
    from hubwizard.lab import lifecycle as lab

    try:
        lab.validate_name(args.name)
        if args.lab_command == "up":
            _interrupt_on_sigterm()
            return _up(args)
        if args.lab_command == "down":
            lab.down(args.name, progress=_say)
            return EXIT_OK
        return _status(args)
    except HubwizardError as exc:
        if getattr(args, "json", False):  # the one JSON error shape of every command (cli/main.py)
            raise
        print(f"lab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - docker/network failures become one readable line
        from hubwizard.lab.dockerguard import call_timeout, is_timeout, silent

        if is_timeout(exc):  # a Docker call no guard named: still a plain message, never a traceback
            print(f"lab: {silent('an API call', call_timeout())}", file=sys.stderr)
        else:
            print(f"lab: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _interrupt_on_sigterm() -> None:
    """A killed `lab up` (CI timeout, kill PID) must still remove what it made: turn SIGTERM
    into KeyboardInterrupt, which the lab's cleanup already handles."""
    import signal
    import threading

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _say(message: str) -> None:
    print(message, flush=True)


def _up(args: argparse.Namespace) -> int:
    import re

    from hubwizard.core.config import load_site
    from hubwizard.core.errors import ConfigError
    from hubwizard.lab import lifecycle as lab

    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", args.user):
        raise ConfigError(f"--user {args.user!r}: not a valid user name")
    if args.sudo_password and args.user == "root":
        raise ConfigError("--sudo-password needs --user NAME (root does not use sudo)")
    if args.mirror:  # read where the images are built (lab/mirror.py), the VM images included
        import os

        from hubwizard.lab import mirror as lab_mirror

        try:
            lab_mirror.from_url(args.mirror)
        except lab_mirror.NoMirror as exc:
            raise ConfigError(str(exc)) from None
        os.environ[lab_mirror.MIRROR_ENV] = args.mirror
    spec = lab.LabSpec(
        name=args.name,
        nodes=args.nodes,
        spares=args.spares,
        nfs_host=args.nfs_host,
        user=args.user,
        sudo_password=args.sudo_password,
        ssh_port=args.ssh_port,
        jump=args.jump,
        with_docker=args.with_docker,
        base_image=args.base_image,
        dummy_login=args.dummy_login,
        students=args.students,
    )
    site = Path(args.output or f"{args.name}.toml")
    if args.track != "swarm-mode" and not args.vm:
        raise ConfigError(f"lab up --track {args.track} is built for the VM lab: add --vm (the container lab "
                          "writes a swarm-mode site; its kernel has no NFS for the classic /home)")
    if args.vm:  # real kernels: kernel nfsd, NFS volumes, XFS project quotas (slower: TCG emulation)
        from hubwizard.lab import vm as lab_vm

        record = lab_vm.up(spec, site, progress=_say, track=args.track)
    else:
        record = lab.up(spec, site, progress=_say)
    load_site(site)  # what we hand over must be what the rest of hubwizard accepts
    print(f"site file: {site}  (secrets: {site.with_name(site.stem + '.secrets.toml')}, 0600)")
    print(f"next: hubwizard plan -c {site}")
    if args.track == "classic":  # the tutorial's admin makes the accounts; classic-uids checks them
        print("classic: first create the users of [hub] allowed_users with one uid:gid everywhere, e.g. "
              "`groupadd -g 2001 student1 && useradd -m -u 2001 -g 2001 student1` on the hub, the same with "
              "-M (no home: autofs mounts the hub's) on each node")
    if record.get("oidc"):
        from hubwizard.lab import oidc

        print(f"login: OpenID provider http://{record['oidc']['ip']}:{oidc.PORT}; admins {', '.join(oidc.ADMINS)}, "
              f"users {_users(oidc.students(record['oidc'].get('students', 2)))}; {oidc.OUTSIDER} is refused (403)")
    for host, machine in record["machines"].items():
        print(f"  {host:<8} {machine['ip']:<15} {machine['role']:<6} {_ssh_command(record, host)}")
    return EXIT_OK


def _ssh_command(record: dict, host: str) -> str:
    """The ssh command line that logs in the way the site file says (key, known_hosts, jump)."""
    spec = record["spec"]
    base = ["ssh", "-i", record["key"], "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={record['known_hosts']}"]
    if spec["ssh_port"] != 22:
        base += ["-p", str(spec["ssh_port"])]
    cmd = list(base)
    if spec["jump"] and host != "hub":
        hub = f"{spec['user']}@{record['machines']['hub']['ip']}"
        cmd += ["-o", "ProxyCommand=" + shlex.join([*base, "-W", "%h:%p", hub])]
    return shlex.join([*cmd, f"{spec['user']}@{record['machines'][host]['ip']}"])


def _status(args: argparse.Namespace) -> int:
    from hubwizard.lab import lifecycle as lab

    report = lab.status(args.name)
    code = EXIT_OK if report["healthy"] else EXIT_FAILED  # scripts can wait on `lab status`
    if args.json:
        print(json.dumps(report, indent=2))
        return code
    if not report["up"]:
        print(f"lab {args.name!r} is not up")
        return code
    print(f"lab {args.name!r}  site: {report['site'] or '(unknown)'}")
    if record_oidc := (lab.load_record(args.name) or {}).get("oidc"):
        print(f"  login    http://{record_oidc['ip']}:9400 (OpenID provider; users in the site file's [hub])")
    if report["registry"]:
        reg = report["registry"]
        print(f"  registry {reg['url']} (from this host: 127.0.0.1:{reg['host_port']}, user lab)")
    print(f"  {'NAME':<9}{'ROLE':<9}{'IP':<16}{'STATE':<10}{'SSHD':<6}DOCKERD")
    for m in report["machines"]:
        print(f"  {m['name']:<9}{m['role']:<9}{m['ip']:<16}{m['state']:<10}{m.get('sshd', '-'):<6}{m.get('dockerd', '-')}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: `python -m hubwizard.lab.cli up|down|status ...`."""
    parser = argparse.ArgumentParser(prog="hubwizard")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
