"""One hubwizard change at a time on a host, even after a killed run.

A killed `apply` (Ctrl-C twice, SIGKILL, a dropped laptop lid) leaves its remote command
running: sshd does not stop it, and apt-get goes on configuring packages for a minute. A
resume started at once would race with that orphan (seen in the lab: `systemctl enable --now
docker` failing while the orphaned apt-get still configured docker.io). So every command of
an apply phase holds a host-wide lock, flock(1) on LOCK, while it runs; the orphan keeps the
lock until it ends, and a new run waits for the lock once per host before it looks at it.

flock is in util-linux, on every Debian, Ubuntu and RHEL host. A host without it, or without
a readable lock file, runs its commands unlocked, as before.

The lock lives in a directory only root writes (/run/hubwizard, 0755), not in the world-writable
/run/lock: there any local user could plant a symlink at the lock's name for root's `: > LOCK`
to truncate the file it points to, or hold the lock forever. A command that is not root cannot
create the directory and runs unlocked until a root command has made it.
"""

from __future__ import annotations

import os
import shlex

LOCK = "/run/hubwizard/host.lock"
WAITING = "an earlier hubwizard command is still running on this host (a killed apply?); waiting for it to end"

def locked(command: str, wait: float, lock: str = LOCK) -> str:
    """``command`` run under the host lock, waiting at most ``wait`` seconds for it.

    The shell that runs the command holds the lock (fd 9), not the command: it runs in the same
    shell as without the lock (the login shell, or sh under sudo), and a daemon it starts does
    not inherit the lock. The last line keeps the shell from exec'ing into the command."""
    w = max(1, int(wait))
    make = f"mkdir -p -m 755 {shlex.quote(os.path.dirname(lock) or '/')} && : > {lock}"
    return (f"if command -v flock >/dev/null 2>&1 && {{ [ -e {lock} ] || {{ {make}; }}; }} 2>/dev/null "
            f"&& [ -r {lock} ]; then exec 9<{lock}; flock -w {w} 9 || {{ echo 'hubwizard: another "
            f"hubwizard command held this host for {w} s' >&2; exit 1; }}; fi\n"
            f"{{ {command}\n}} 9<&-\nexit $?")


def wait_until_free(wait: float, lock: str = LOCK) -> str:
    """Returns at once when no hubwizard command holds the lock; otherwise says so and waits."""
    w = max(1, int(wait))
    return (f"command -v flock >/dev/null 2>&1 && [ -r {lock} ] || exit 0; flock -n {lock} true && exit 0; "
            f"echo {shlex.quote(WAITING)}; flock -w {w} {lock} true || {{ echo 'still running after {w} s: look at it with "
            f"ps -ef --forest on this host' >&2; exit 1; }}")
