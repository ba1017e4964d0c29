"""Backups and restore, for real, on a lab of 1 hub + 1 node: the whole swarm-mode track with
[backups] to node1 over SFTP (an SSH key the step makes), then a backup, a user's file and the
hub's database deleted, each restored: the file is back, another user's newer file untouched,
the hub's users are back. An unreachable target makes verify fail naming the target and the
fix. The repository password appears in no output, journal or file but its own.
The monitor's backup line (read from the status file each run leaves) says the last backup's
time and size, and "failed" after a run against the unreachable target.
Layout "nfs-host" (`lab up --nfs-host`: storage.server = "nfs", a third machine) proves the same
when the users' storage is not on the hub: the NFS host backs up the folders, the hub its database.
Wall times are printed (pytest -s shows them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.lab_fixture import running_lab

ROOT = Path(__file__).resolve().parents[2]
# the hub's users as its database holds them: name -> created; a database made anew after a
# loss re-adds the site's users with new times, so only the restored one gives the same map
DB_USERS = ("import sqlite3, sys; "
            "print(dict(sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True).execute('select name, created from users')))")

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3000)]


def hubwizard(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def backups_result(res: subprocess.CompletedProcess, host: str = "hub") -> dict:
    """The backups step's result on one host (the hub by default) in a --json document."""
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise AssertionError(f"not one JSON document on stdout:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}") from None
    result = dict(next(s for s in doc["steps"] if s["id"] == "backups")["hosts"][host])
    result["checks"] = [c for c in doc.get("checks", []) if c["step"] == "backups"]
    return result


def on(lab_name: str, machine: str, script: str, *, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    """A shell script run as root inside one lab machine (what the test does behind hubwizard's back)."""
    flags = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    res = subprocess.run(["docker", "exec", *flags, f"hwlab-{lab_name}-{machine}", "sh", "-c", script],
                         capture_output=True, text=True, timeout=300)
    if check:
        assert res.returncode == 0, f"{machine}: {script}\n{res.stdout}\n{res.stderr}"
    return res


HUB_API = """
import json, os, sys, urllib.request
method, path = sys.argv[1], sys.argv[2]
req = urllib.request.Request("http://127.0.0.1:8000/hub/api" + path, method=method,
                             headers={"Authorization": "token " + os.environ["TOKEN"]})
print(urllib.request.urlopen(req, timeout=10).read().decode())
"""


def hub_api(lab, method: str, path: str, wait: float = 240) -> str:
    """A call to the hub's API on the hub machine, retried while the hub (re)starts: its proxy
    answers 404 or resets until the hub has registered its routes."""
    deadline = time.monotonic() + wait
    while True:
        res = on(lab.name, "hub", f"python3 -c '{HUB_API}' {method} {path}", env={"TOKEN": lab.secrets["hub_api_token"]},
                 check=False)
        if res.returncode == 0:
            return res.stdout
        assert time.monotonic() < deadline, f"hub API {method} {path}: {res.stderr[-600:]}"
        time.sleep(3)


def hub_answers(lab) -> None:
    """Wait until the hub's API answers (its version, no token needed): it may be restarting."""
    hub_api(lab, "GET", "/")


def db_users(lab) -> str:
    return on(lab.name, "hub", f'python3 -c "{DB_USERS}" {db_file(lab)}').stdout


def db_file(lab) -> str:
    return on(lab.name, "hub", "docker volume inspect --format '{{.Mountpoint}}' jupyterhub-data").stdout.strip() \
        + "/jupyterhub.sqlite"


def monitor_backup_line(site_path: Path) -> str:
    """The backup line of one monitor refresh, as the TUI shows it."""
    from hubwizard import monitor
    from hubwizard.core.config import load_site
    from hubwizard.core.secrets import load_secrets

    model, conns = monitor.connect(load_site(site_path), load_secrets(site_path))
    try:
        return model.fetch().backup
    finally:
        conns.close()


@pytest.mark.parametrize("layout", ["hub", "nfs-host"])
def test_backup_and_restore(tmp_path, layout):
    started = time.monotonic()
    store = "nfs" if layout == "nfs-host" else "hub"  # the machine holding /var/nfs
    with running_lab(tmp_path, nodes=1, nfs_host=layout == "nfs-host") as lab:
        node1 = lab.site().host("node1").address
        with lab.site_path.open("a") as fh:
            fh.write(f'\n[backups]\nenabled = true\ntarget = "sftp:root@{node1}:/srv/backups/{lab.name}"\n')
        site = str(lab.site_path)

        t0 = time.monotonic()
        applied = hubwizard("apply", "-c", site, "--yes")
        print(f"apply (whole track + backups): {time.monotonic() - t0:.0f} s")
        assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
        password = lab.secrets["backup_password"]
        assert len(password) >= 32
        # the backups step's own verify (the rest of the track is other tests' business: other
        # engineers' edits to the hub's build context make its check fail while this runs)
        verified = hubwizard("verify", "-c", site, "--json")
        for machine in {store, "hub"}:
            assert backups_result(verified, machine)["status"] == "ok", verified.stdout[-3000:]
        for machine in {store, "hub"}:  # each backup host has its own timer and root-only settings
            on(lab.name, machine, "systemctl is-active hubwizard-backup.timer && systemctl is-enabled hubwizard-backup.timer")
            assert on(lab.name, machine, "stat -c %a /etc/hubwizard/restic.password /etc/hubwizard/restic.env"
                      ).stdout.split() == ["600", "600"]
        # node1 accepts the hub's backup key for SFTP only
        assert 'restrict,command="' in on(lab.name, "node1", "cat /root/.ssh/authorized_keys").stdout

        # the hub's users (its database) and two users' files
        hub_answers(lab)
        before = db_users(lab)
        assert before, "the hub's database holds no user"
        on(lab.name, store, "mkdir -p /var/nfs/student1 /var/nfs/student2 && echo 'semester work' > /var/nfs/student1/notes.txt"
                            " && echo 'before' > /var/nfs/student2/keep.txt")
        t0 = time.monotonic()
        now = hubwizard("backup", "now", "-c", site)
        print(f"backup now: {time.monotonic() - t0:.0f} s")
        assert now.returncode == 0, now.stdout + now.stderr
        assert "backup " in now.stdout and "made at" in now.stdout
        assert now.stdout.count("made at") == len({store, "hub"}), now.stdout  # the NFS host's, then the hub's
        line = monitor_backup_line(lab.site_path)
        print(f"monitor: {line}")
        shown = r"backup: .*20\d\d-\d\d-\d\d \d\d:\d\d UTC \((just now|\d+ min ago)\), [\d.]+ (B|KiB|MiB), repo ok"
        assert re.match(shown, line), line
        if layout == "nfs-host":
            assert line.startswith("backup: nfs ") and " · hub " in line, line

        # the loss: a user's file, and the hub's database (the hub restarts on an empty one)
        on(lab.name, store, "rm /var/nfs/student1/notes.txt && echo 'after' > /var/nfs/student2/keep.txt")
        on(lab.name, "hub", f"docker service scale --detach=false jupyterhub=0 >/dev/null && rm {db_file(lab)} && "
                            "docker service scale --detach=false jupyterhub=1 >/dev/null")
        hub_answers(lab)  # again, on a new database
        assert db_users(lab) != before, "the database was not lost: the test proves nothing"

        t0 = time.monotonic()
        restored = hubwizard("restore", "--user", "student1", "-c", site, "--yes")
        print(f"restore --user: {time.monotonic() - t0:.0f} s")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert on(lab.name, store, "cat /var/nfs/student1/notes.txt").stdout == "semester work\n"
        assert on(lab.name, store, "cat /var/nfs/student2/keep.txt").stdout == "after\n", "another user was touched"

        t0 = time.monotonic()
        restored = hubwizard("restore", "--hub", "-c", site, "--yes")
        print(f"restore --hub: {time.monotonic() - t0:.0f} s")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        hub_answers(lab)
        assert db_users(lab) == before, "the hub's users are not back"

        # bad input is said, not a traceback
        bad = hubwizard("restore", "--user", "student1", "--at", "2001-01-01", "-c", site, "--yes")
        assert bad.returncode == 1 and "no backup at or before 2001-01-01" in bad.stderr, bad.stderr

        # the target stops answering: verify fails naming the target and the fix
        store_ip = lab.site().host(store).address  # the lab network's address (hostname -I starts with docker0)
        rule = f"INPUT -s {store_ip} -p tcp --dport 22 -j REJECT --reject-with tcp-reset"
        on(lab.name, "node1", f"iptables -I {rule}")
        try:
            down = hubwizard("verify", "-c", site, "--limit", store, "--json")
            failed_now = hubwizard("backup", "now", "-c", site)
        finally:
            on(lab.name, "node1", f"iptables -D {rule}")
        assert failed_now.returncode == 1 and "cannot be reached" in failed_now.stderr, failed_now.stderr[-2000:]
        line = monitor_backup_line(lab.site_path)
        print(f"monitor after a failed run: {line}")
        assert "failed 20" in line and f"journalctl -u hubwizard-backup` on {store}" in line, line
        assert down.returncode == 1, down.stdout[-3000:]
        result = json.dumps(backups_result(down, store))
        assert f"backup target sftp:root@{node1}:/srv/backups/{lab.name} cannot be reached from {store}" in result, result
        assert f"check that {node1} is up and accepts SSH on port 22 from {store}" in result, result

        # the password is in its own file and nowhere else
        outputs = [applied, verified, now, restored, bad, down, failed_now]
        assert not any(password in r.stdout + r.stderr for r in outputs)
        journal = "".join(p.read_text() for p in lab.site_path.parent.rglob("journal.jsonl"))
        assert password not in journal
        for machine in {store, "hub"}:
            seen = on(lab.name, machine, f"grep -rlF -- '{password}' /etc /usr/local/sbin /var/log /var/lib/hubwizard "
                                         "2>/dev/null; true").stdout
            assert seen.split() == ["/etc/hubwizard/restic.password"], (machine, seen)
    print(f"test_backup_and_restore[{layout}]: {time.monotonic() - started:.0f} s in all (lab up and down included)")
