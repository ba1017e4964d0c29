"""`hubwizard init` answered through a real pseudo-terminal (pexpect): bad answers are
refused as typed with the site file's message, and the file it writes passes validation and
gets past `hubwizard plan`'s input checks (exit code not 2)."""

from __future__ import annotations

import subprocess
import sys

import pexpect

from hubwizard.core.config import load_site
from tests.conftest import BASIC_RECIPES

CLEAR = "\x15"  # Ctrl-U: clear the default in a questionary text prompt


def test_init_writes_a_site_that_plan_accepts(tmp_path):
    site = tmp_path / "workshop.toml"
    c = pexpect.spawn(sys.executable, ["-m", "hubwizard.cli.main", "init", "-c", str(site)], encoding="utf-8",
                      timeout=20, dimensions=(40, 120), cwd=str(tmp_path))
    try:
        c.expect("Site name")
        c.send(CLEAR + "workshop\r")
        c.expect("Track")
        c.send("\r")
        c.expect("Domain")
        c.send("not a domain!\r")
        c.expect("not a valid host name")  # refused as typed, same words as load_site
        c.send(CLEAR + "hub\r")
        c.expect("needs a dot, e.g. hub.example.org")  # the certificate's name is a full DNS name
        c.send(CLEAR + "hub.example.org\r")
        c.expect("e-mail")
        c.send("admin@example.org\r")
        c.expect("OAuth provider")
        c.send("\x1b[A\r")  # up from github (the suggestion) to dummy (last)
        c.expect("ANYONE can log in")
        c.send("n")  # declined: back to the provider
        c.expect("choose a real login provider")
        c.expect("OAuth provider")
        c.send("\x1b[A" * 5 + "\r")  # up from dummy (the last answer) to github (first)
        c.expect("callback URL is https://hub.example.org/hub/oauth_callback")  # to register before the id
        c.expect("OAuth client id")
        c.send("my-client\r")
        c.expect("client secret")
        c.send("s3cret-value\r")
        c.expect("Hub admins")
        c.send("\r")
        c.expect("name at least one admin")  # OAuth without an admin is refused as typed
        c.send("alice, bob\r")
        c.expect("Allowed users")
        c.send("carol, dave\r")
        c.expect("Shared home")
        c.send("\r")
        c.expect("Exported path")
        c.send("\r")
        c.expect("quotas")
        c.send("y")
        c.expect("Default quota")
        c.send(CLEAR + "10X\r")
        c.expect("not a valid size")
        c.send(CLEAR + "5G\r")
        for prompt in ("Hub base image", "Single-user", r"Registry \(", "Registry user"):
            c.expect(prompt)
            c.send("\r")
        c.expect("USER an account you can push to")  # Docker Hub, no registry user: no default to offer
        c.expect("Hub image")
        c.send("workshop-hub\r")
        c.expect("Docker Hub needs USER/NAME")  # Docker Hub's own library: nobody else can push there
        c.send(CLEAR + "jupyterhub-hub:latest\r")
        c.expect("Docker Hub needs USER/NAME")  # the site file's default is that too: refused typed back
        c.send(CLEAR + "alice/workshop-hub:latest\r")
        c.expect("Nightly encrypted backups")
        c.send("y")
        c.expect("Backup target")
        c.send("ftp://store/x\r")
        c.expect("not a backup target")  # refused as typed
        c.send(CLEAR + "sftp:backup@10.0.0.99:/srv/backups\r")
        c.expect("S3 access key id")
        c.send("\r")  # an sftp target needs none
        c.expect("S3 secret key")
        c.send("\r")
        c.expect("hub: address")
        c.send("999.1.1.1\r")
        c.expect("not an IPv4 address")  # refused as typed, with the reason, and asked again
        c.send(CLEAR + "127.0.0.1\r")
        c.expect("hub: SSH user")
        c.send("\r")
        c.expect("hub: SSH port")
        c.send(CLEAR + "1\r")  # nothing listens: plan fails to connect, fast
        c.expect("Add a node")
        c.send("y")
        c.expect("node name")
        c.send("\r")
        c.expect("node1: address")
        c.send("127.0.0.1\r")
        c.expect("node1: SSH user")
        c.send("\r")
        c.expect("node1: SSH port")
        c.send(CLEAR + "2\r")
        c.expect("jump")
        c.send("\x1b[B\r")  # through the hub
        c.expect("Add a node")
        c.send("n")
        c.expect(r"OAuth callback URL \(register it with github\): https://hub.example.org/hub/oauth_callback")
        c.expect("made backup_password there")
        c.expect(pexpect.EOF)
    finally:
        c.close()
    assert c.exitstatus == 0, c.before
    loaded = load_site(site)
    assert loaded.site.domain == "hub.example.org" and loaded.quotas.enabled and loaded.quotas.default == "5G"
    assert (loaded.oauth.provider, loaded.oauth.client_id) == ("github", "my-client")
    assert loaded.hub.admin_users == ["alice", "bob"] and not loaded.oauth.i_understand_anyone_can_log_in
    assert loaded.hub.allowed_users == ["carol", "dave"] and loaded.images.hub == "alice/workshop-hub:latest"
    assert [(h.name, h.port, h.jump) for h in loaded.hosts] == [("hub", 1, None), ("node1", 2, "hub")]
    assert "s3cret-value" not in site.read_text()
    secrets = site.with_name("workshop.secrets.toml")
    assert "s3cret-value" in secrets.read_text() and (secrets.stat().st_mode & 0o777) == 0o600
    assert loaded.backups.enabled and loaded.backups.target == "sftp:backup@10.0.0.99:/srv/backups"
    assert 'backup_password = "' in secrets.read_text()  # made by init, kept in the 0600 file
    plan = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "plan", "-c", str(site), "--recipes",
                           str(BASIC_RECIPES)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={"HUBWIZARD_OAUTH_CLIENT_SECRET": "x", "PATH": "/usr/bin:/bin"})
    assert plan.returncode not in (0, 2), plan.stderr  # past validation; fails only to reach 127.0.0.1:1
    assert "bad input" not in plan.stderr


def test_enter_through_init_never_gives_an_open_login(tmp_path):
    """Enter at every question (typing only what has no default): the login offered is GitHub,
    which stops at its client id; the open dummy login is never reached without choosing it."""
    site = tmp_path / "site.toml"
    c = pexpect.spawn(sys.executable, ["-m", "hubwizard.cli.main", "init", "-c", str(site)], encoding="utf-8",
                      timeout=20, dimensions=(24, 80), cwd=str(tmp_path))
    try:
        c.expect("Site name")
        c.send("\r")
        c.expect("is required")  # no default name: Enter alone is refused
        c.send("ws\r")
        c.expect("Track")
        c.send("\r")
        c.expect("Domain")
        c.send("\r")
        c.expect("is required")
        c.send("hub.example.org\r")
        c.expect("e-mail")
        c.send("a@example.org\r")
        c.expect("OAuth provider")
        c.send("\r")
        idx = c.expect(["ANYONE can log in", "OAuth client id"])
        assert idx == 1, "Enter at the provider question led to the dummy login"
        c.send("\r")
        c.expect("needs client_id")  # GitHub without a client id is refused as typed
        c.sendintr()
        c.expect(pexpect.EOF)
    finally:
        c.close()
    assert c.exitstatus == 130 and not site.exists()
