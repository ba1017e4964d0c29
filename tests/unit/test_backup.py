"""Backups: the [backups] section, restic.env, restic's messages made readable, choosing a
snapshot for --at, the age check, and the rendered script and units (no secret in them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hubwizard.actions import backup
from hubwizard.core.config import parse_site
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts, template_context
from tests.unit.sitetext import LAB_LOGIN, site_text

BASE = site_text() + LAB_LOGIN


def site(backups: str = ""):
    return parse_site(BASE + ("\n[backups]\n" + backups if backups else ""))


def test_off_by_default():
    assert site().backups.enabled is False


def test_enabled_needs_a_target():
    with pytest.raises(ConfigError, match="no target is named"):
        site("enabled = true")


@pytest.mark.parametrize("target", ["sftp:root@10.0.0.11:/srv/backups", "sftp:backup@store.example.org:/b/demo",
                                    "s3:https://minio.example.org:9000/backups/demo", "s3:s3.amazonaws.com/bk"])
def test_targets_accepted(target):
    extra = '\ns3_access_key_id = "AKIA1"' if target.startswith("s3:") else ""
    assert site(f'enabled = true\ntarget = "{target}"{extra}').backups.target == target


@pytest.mark.parametrize("target", ["sftp:root@h:relative", "sftp:root@h:/x\\n", "ftp://h/x", "sftp:root@h;id:/x",
                                    "sftp:root@h:/a/../etc", "s3:https://h/Bucket$(id)"])
def test_targets_refused(target):
    with pytest.raises(ConfigError, match="not a backup target|must not contain"):
        site(f'enabled = true\ntarget = "{target}"')


def test_schedule_cannot_add_unit_lines():
    with pytest.raises(ConfigError, match="OnCalendar"):
        site('enabled = true\ntarget = "sftp:root@10.0.0.11:/b"\nschedule = "daily\\nExecStartPre=/bin/sh"')


def test_s3_needs_its_key_id():
    with pytest.raises(ConfigError, match="s3_access_key_id"):
        site('enabled = true\ntarget = "s3:https://minio:9000/bk"')


def test_env_file_holds_no_password_and_quotes_values():
    s = site('enabled = true\ntarget = "sftp:root@10.0.0.11:/srv/backups"\nssh_port = 2222')
    text = backup.env_text(s, None)
    assert f"RESTIC_PASSWORD_FILE={backup.PASSWORD_FILE}" in text
    assert "RESTIC_PASSWORD=" not in text
    assert "'ssh -i /etc/hubwizard/backup_ssh_key" in text and "-p 2222 root@10.0.0.11 -s sftp'" in text
    s3 = site('enabled = true\ntarget = "s3:https://minio:9000/bk"\ns3_access_key_id = "AKIA1"')
    text = backup.env_text(s3, "se cret'$x")
    assert "AWS_SECRET_ACCESS_KEY='se cret'\"'\"'$x'" in text and "HUBWIZARD_SFTP_COMMAND" not in text


def test_target_host_is_found_by_address_or_name():
    assert backup.target_host(site('enabled = true\ntarget = "sftp:root@10.0.0.11:/b"')) == "node1"
    assert backup.target_host(site('enabled = true\ntarget = "sftp:root@node1:/b"')) == "node1"
    assert backup.target_host(site('enabled = true\ntarget = "sftp:root@store.example.org:/b"')) is None


def test_known_hosts_line_port():
    assert backup.known_hosts_line("10.0.0.11", 22, "ssh-ed25519 AAAA root@x") == "10.0.0.11 ssh-ed25519 AAAA\n"
    assert backup.known_hosts_line("h", 2222, "ssh-ed25519 AAAA") == "[h]:2222 ssh-ed25519 AAAA\n"


# restic 0.14's own words (captured in the lab) for the usual failures
UNREACHABLE = """subprocess ssh: ssh: connect to host 10.0.0.99 port 22: Connection refused
Fatal: unable to open repository at sftp:root@10.0.0.99:/srv/backups: unable to start the sftp session, error: EOF"""
NO_REPO = """Fatal: unable to open config file: Lstat /srv/backups/config: no such file or directory
Is there a repository at the following location?
sftp:root@10.0.0.11:/srv/backups"""


def test_unreachable_target_names_target_and_fix():
    s = site('enabled = true\ntarget = "sftp:root@10.0.0.99:/srv/backups"')
    what, fix = backup.failure_message(s, "hub", UNREACHABLE)
    assert "sftp:root@10.0.0.99:/srv/backups cannot be reached from hub" in what and "Connection refused" in what
    assert "10.0.0.99 is up and accepts SSH on port 22 from hub" in fix and "[backups] target" in fix


def test_other_failures():
    s = site('enabled = true\ntarget = "sftp:root@10.0.0.11:/srv/backups"')
    assert "no restic repository" in backup.failure_message(s, "hub", NO_REPO)[0]
    assert "backup_password" in backup.failure_message(s, "hub", "Fatal: wrong password or no key found")[1]
    denied = "root@10.0.0.11: Permission denied (publickey).\nFatal: unable to open repository"
    assert "authorized_keys" in backup.failure_message(s, "hub", denied)[1]


SNAPSHOTS = [
    {"time": "2026-12-01T02:30:04.123456789+00:00", "id": "a" * 64, "paths": ["/var/nfs"]},
    {"time": "2026-11-30T02:30:00Z", "id": "b" * 64, "paths": ["/var/nfs"]},
    {"time": "2026-12-01T23:10:00.5+01:00", "id": "c" * 64, "paths": ["/var/nfs"]},
]


def test_snapshots_sorted_and_picked_by_time():
    snaps = backup.parse_snapshots(json.dumps(SNAPSHOTS))
    assert [s.id[0] for s in snaps] == ["b", "a", "c"]
    assert backup.pick_snapshot(snaps, None).id[0] == "c"
    assert backup.pick_snapshot(snaps, backup.parse_time("2026-12-01")).id[0] == "b"
    assert backup.pick_snapshot(snaps, backup.parse_time("2026-12-01 22:10:01")).id[0] == "c"  # 23:10:00.5+01:00
    assert backup.pick_snapshot(snaps, backup.parse_time("2026-12-01 22:09:59")).id[0] == "a"
    assert backup.pick_snapshot(snaps, backup.parse_time("2026-11-01")) is None
    assert backup.parse_snapshots("null") == []


def test_bad_time_is_said():
    with pytest.raises(ValueError, match="not a time"):
        backup.parse_time("yesterday")


def test_age_problem():
    snaps = backup.parse_snapshots(json.dumps(SNAPSHOTS))
    newest = snaps[-1].time
    assert backup.age_problem(snaps, newest + timedelta(hours=35), 36) is None
    assert "37 h old" in backup.age_problem(snaps, newest + timedelta(hours=37), 36)
    assert "no backup has been made yet" in backup.age_problem([], datetime.now(UTC), 36)


def test_rendered_files_name_the_volume_and_hold_no_secret():
    s = site('enabled = true\ntarget = "sftp:root@10.0.0.11:/srv/backups"\nschedule = "*-*-* 03:15:00"')
    files = {path: text for path, text, _mode in backup.rendered_files(template_context(s, Facts.offline(s)))}
    script = files["/usr/local/sbin/hubwizard-backup"]
    assert backup.VOLUME == "jupyterhub-data" and "volume inspect --format '{{.Mountpoint}}' jupyterhub-data" in script
    assert "STORAGE=/var/nfs" in script and "--keep-daily 7" in script
    assert ". /etc/hubwizard/restic.env" in files[backup.RESTIC]
    assert "OnCalendar=*-*-* 03:15:00" in files["/etc/systemd/system/hubwizard-backup.timer"]
    assert "ExecStart=/usr/local/sbin/hubwizard-backup" in files["/etc/systemd/system/hubwizard-backup.service"]
    assert not any("PASSWORD=" in text for text in files.values())


# ------------------------------------------------------------------ the status file and the monitor's line

NFS_HOST = BASE.replace('role = "node"\n', 'role = "node"\n\n[[hosts]]\nname = "nfs"\naddress = "10.0.0.20"\nrole = "nfs"\n', 1)
TARGET = 'enabled = true\ntarget = "sftp:root@10.0.0.11:/srv/backups"'
CLASSIC = BASE.replace('email = "admin@example.org"', 'email = "admin@example.org"\ntrack = "classic"')


def test_status_file_parsed():
    ok = backup.parse_status('{"host": "hub", "time": "2026-12-02T01:40:12Z", "ok": true, "exit": 0, "stage": "done", '
                             '"snapshot": "1a2b3c4d", "bytes": 13002342, "added": 4096, "checked": "ok"}\n')
    assert ok.ok and ok.bytes == 13002342 and ok.checked == "ok" and ok.time == datetime(2026, 12, 2, 1, 40, 12, tzinfo=UTC)
    failed = backup.parse_status('{"host": "hub", "time": "2026-12-02T02:00:00Z", "ok": false, "exit": 1, '
                                 '"stage": "backup", "snapshot": "", "bytes": null, "added": null, "checked": ""}')
    assert not failed.ok and failed.bytes is None and failed.stage == "backup"
    assert backup.parse_status("") is None
    with pytest.raises(ValueError):
        backup.parse_status("hello")


def test_monitor_backup_line():
    from hubwizard import monitor

    now = datetime(2026, 12, 2, 4, 41, tzinfo=UTC)
    run = backup.RunStatus("hub", datetime(2026, 12, 2, 1, 40, tzinfo=UTC), True, 0, "done", "1a2b3c4d",
                           13002342, 4096, "ok")
    assert monitor.backup_line([("hub", run)], now) == "backup: 2026-12-02 01:40 UTC (3 h ago), 12.4 MiB, repo ok"
    assert monitor.backup_line([("hub", None)], now) == "backup: never run"
    failed = backup.RunStatus("hub", datetime(2026, 12, 2, 2, 0, tzinfo=UTC), False, 1, "backup")
    assert monitor.backup_line([("hub", failed)], now) == \
        "backup: failed 2026-12-02 02:00 UTC (see `journalctl -u hubwizard-backup` on hub)"
    late = monitor.backup_line([("hub", run)], now + timedelta(days=2))
    assert "(2 d ago)" in late and "older than 36 h" in late
    hub = backup.RunStatus("hub", datetime(2026, 12, 2, 1, 41, tzinfo=UTC), True, 0, "done", "9f8e7d6c", 81920)
    both = monitor.backup_line([("nfs", run), ("hub", hub)], now)
    assert both == "backup: nfs 2026-12-02 01:40 UTC (3 h ago), 12.4 MiB, repo ok · hub 01:41 (3 h ago), 80.0 KiB"
    assert monitor.backup_line([], now) == "backup: off ([backups] in the site file)"
    assert monitor.backup_line([("hub", "hub: timed out")], now) == "backup: not readable (hub: timed out)"
    assert monitor.ago(30) == "just now" and monitor.ago(720) == "12 min ago"


# ------------------------------------------------------------------ which hosts back up what


def test_hub_and_storage_on_one_host_back_up_both_and_prune():
    s = site(TARGET)
    assert [h.name for h in backup.backup_hosts(s)] == ["hub"]
    script = _script(s, "hub")
    assert "STORAGE=/var/nfs" in script and "--host \"$HOST\"" in script and "HOST=hub" in script
    assert "forget --tag hubwizard --prune" in script and "run check" in script
    assert backup.STATUS in script and "chmod 0644" in script


def test_dedicated_nfs_host_backs_up_storage_there_and_the_database_on_the_hub():
    s = parse_site(NFS_HOST + '\n[storage]\nserver = "nfs"\n\n[backups]\n' + TARGET)
    assert [h.name for h in backup.backup_hosts(s)] == ["nfs", "hub"]
    assert [h.name for h in s.targets("backup")] == ["nfs", "hub"]
    nfs, hub = _script(s, "nfs"), _script(s, "hub")
    assert "STORAGE=/var/nfs" in nfs and "forget --tag hubwizard" in nfs  # the storage host prunes every host's
    assert "STORAGE=''" in hub and "forget" not in hub.split("stage=backup", 1)[1]  # the hub: its database only
    assert "jupyterhub-data" in hub and "nothing to back up on $HOST" in hub
    for script in (nfs, hub):  # both render to valid sh
        import subprocess

        assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True).returncode == 0


def test_classic_backs_up_home_on_the_hub():
    s = parse_site(CLASSIC + "\n[backups]\n" + TARGET)
    assert [h.name for h in backup.backup_hosts(s)] == ["hub"] and backup.storage_path(s) == "/home"
    assert "STORAGE=/home" in _script(s, "hub")


def test_backups_step_planned_on_both_tracks():
    """Both tracks: the same step (same calls), on classic after its hub and before classic-verify."""
    from hubwizard.core.steps import load_steps

    swarm = {s.id: s for s in load_steps("swarm-mode")}
    classic = [s.id for s in load_steps("classic")]
    step = next(s for s in load_steps("classic") if s.id == "backups")
    assert step.targets == swarm["backups"].targets == "backup" and not step.parallel
    assert [i.call for i in step.apply] == [i.call for i in swarm["backups"].apply]
    assert classic.index("classic-hub") < classic.index("backups") < classic.index("classic-verify")


@pytest.mark.parametrize("track", ["classic", "swarm-mode"])
def test_engine_plans_backups_on_each_backup_host(track):
    """The engine's own choice of hosts and condition: a classic site backs up on its hub; a
    swarm site with a dedicated NFS host on that host and on the hub; a site without [backups] nowhere."""
    from pathlib import Path

    from hubwizard.core.journal import Journal
    from hubwizard.core.secrets import Secrets
    from hubwizard.core.steps import load_steps
    from hubwizard.engine.runner import Engine

    def planned(text: str) -> list[str]:
        s = parse_site(text)
        eng = Engine(s, load_steps(track), None, Secrets(), Journal(Path("/nonexistent/j")), lambda e: None,
                     facts=Facts.offline(s))
        step = next(st for st in eng.steps if st.id == "backups")
        return [h.name for h in eng.hosts_for(step) if eng._when(step.when, eng.context(h))]

    if track == "classic":
        assert planned(CLASSIC + "\n[backups]\n" + TARGET) == ["hub"]
        assert planned(CLASSIC) == []
    else:
        assert planned(NFS_HOST + '\n[storage]\nserver = "nfs"\n\n[backups]\n' + TARGET) == ["nfs", "hub"]
        assert planned(BASE + "\n[backups]\n" + TARGET) == ["hub"]


def _script(s, host: str) -> str:
    files = {path: text for path, text, _mode in backup.rendered_files(template_context(s, Facts.offline(s)), host)}
    return files["/usr/local/sbin/hubwizard-backup"]


# ------------------------------------------------------------------ init and the settings form offer backups


def _question(key: str):
    from hubwizard.core import sitefile

    return next(q for q in sitefile.QUESTIONS if (q.section, q.key) == ("backups", key) or q.key == key)


def test_forms_ask_target_key_and_secret_only_once_backups_are_on():
    from hubwizard.core import sitefile

    asked = [q.key for q in sitefile.QUESTIONS if q.section in ("backups", "secrets") and "backup" in q.key + q.section]
    assert asked == ["enabled", "target", "s3_access_key_id", "backup_s3_secret_key"]
    off, on = {}, {"backups": {"enabled": True}}
    for key in ("target", "s3_access_key_id", "backup_s3_secret_key"):
        assert not sitefile.asked(_question(key), off) and sitefile.asked(_question(key), on)


def test_forms_validate_the_target_as_typed():
    from hubwizard.core import sitefile

    draft = {"backups": {"enabled": True}}
    assert sitefile.answer_error(_question("enabled"), True, {}) is None  # the target comes next
    assert "not a backup target" in sitefile.answer_error(_question("target"), "ftp://store/x", draft)
    assert "name one" in sitefile.answer_error(_question("target"), "", draft)
    assert sitefile.answer_error(_question("target"), "sftp:backup@10.0.0.99:/srv/backups", draft) is None
    assert sitefile.answer_error(_question("target"), "s3:https://minio.example.org:9000/bk", draft) is None
    s3 = {"backups": {"enabled": True, "target": "s3:https://minio.example.org:9000/bk"}}
    assert "s3_access_key_id" in sitefile.answer_error(_question("s3_access_key_id"), "", s3)
    assert sitefile.answer_error(_question("s3_access_key_id"), "AKIA1", s3) is None
    sftp = {"backups": {"enabled": True, "target": "sftp:backup@10.0.0.99:/srv/backups"}}
    assert sitefile.answer_error(_question("s3_access_key_id"), "", sftp) is None


def test_saved_site_holds_backups_and_the_password_is_made_once(tmp_path):
    from hubwizard.core import sitefile
    from hubwizard.core.config import load_site
    from hubwizard.core.secrets import load_secrets, write_secrets

    path = tmp_path / "ws.toml"
    draft = {"site": {"name": "ws", "domain": "hub.example.org", "email": "a@example.org"},
             "hosts": [{"name": "hub", "address": "10.0.0.10", "role": "hub"}],
             "oauth": {"provider": "dummy", "i_understand_anyone_can_log_in": True},
             "backups": {"enabled": True, "target": "sftp:backup@10.0.0.99:/srv/backups"}}
    assert sitefile.site_error(draft) is None
    sitefile.write(path, draft)
    assert load_site(path).backups.target == "sftp:backup@10.0.0.99:/srv/backups"
    made = sitefile.generated_secrets(path, draft)
    assert len(made["backup_password"]) >= 32
    write_secrets(path, made)
    assert sitefile.generated_secrets(path, draft) == {}  # kept: the backups made with it need it
    assert load_secrets(path).get("backup_password") == made["backup_password"]
    assert sitefile.generated_secrets(path, {**draft, "backups": {}}) == {}
