"""The end-to-end check's API token controls its own test user only (issue 12, Low).

A real JupyterHub 5 (the lab's hub image, run on this machine's Docker engine, published on
127.0.0.1) runs the services section the hub's config is rendered with. With the check's token
the test user is made, read, started and deleted (what hub_e2e does); every attempt on another
user (start or stop a server, reach it, mint a token, delete, create a user, grant admin) is
refused. Before the fix the token had admin:users/admin:servers and every attack succeeded.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from hubwizard.actions.hub_e2e import E2E_USER
from hubwizard.core.render import Facts, template_context
from hubwizard.core.templating import render_asset
from tests.engine import docker_answers
from tests.unit.test_hub_actions import site

pytestmark = pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
CHECK_TOKEN = secrets.token_hex(32)
ADMIN_TOKEN = secrets.token_hex(32)  # the test's own admin, to make the victim only
VICTIM = "alice"

HEADER = """\
import os, sys
c = get_config()  # noqa: F821


def read_secret(name):
    return None


c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.JupyterHub.db_url = "sqlite:////tmp/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/tmp/jupyterhub_cookie_secret"
"""
FOOTER = f"""
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {ADMIN_TOKEN!r}}})
c.JupyterHub.load_roles.append({{"name": "test-admin", "scopes": ["admin:users"], "services": ["test-admin"]}})
"""


def _hub_image() -> str | None:
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "hubwizard-lab/jupyterhub"],
                         capture_output=True, text=True).stdout.split()
    return out[0] if out else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    image = _hub_image()
    if image is None:
        pytest.skip("no hubwizard-lab/jupyterhub image (JupyterHub 5): `hubwizard lab` builds it")
    s = site()
    services = render_asset("partials/services.py.j2", template_context(s, Facts.offline(s)))
    folder = tmp_path_factory.mktemp("hub")
    (folder / "jupyterhub_config.py").write_text(HEADER + services + FOOTER)
    port, name = _free_port(), f"hwtest-e2e-scope-{secrets.token_hex(4)}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8000",
                    "-e", f"HUBWIZARD_API_TOKEN={CHECK_TOKEN}", "-v", f"{folder}:/srv/config:ro", image,
                    "jupyterhub", "-f", "/srv/config/jupyterhub_config.py"], check=True, capture_output=True)
    try:
        base = f"http://127.0.0.1:{port}/hub/api"
        for _ in range(120):
            with contextlib.suppress(OSError):
                if _call(base, "GET", "/", None)[0] == 200:
                    break
            time.sleep(1)
        else:
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
            pytest.fail(f"JupyterHub did not answer: {(logs.stdout + logs.stderr)[-2000:]}")
        assert _call(base, "POST", f"/users/{VICTIM}", ADMIN_TOKEN)[0] == 201
        yield base
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _call(base: str, method: str, path: str, token: str | None, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PATCH") else None)
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_check_token_drives_its_own_test_user(hub):
    """What hub_e2e does, and what the monitor and the culler check read."""
    assert _call(hub, "POST", f"/users/{E2E_USER}", CHECK_TOKEN)[0] in (201, 409)
    status, body = _call(hub, "GET", f"/users/{E2E_USER}", CHECK_TOKEN)
    assert status == 200 and "servers" in json.loads(body)
    assert _call(hub, "POST", f"/users/{E2E_USER}/server", CHECK_TOKEN)[0] not in (401, 403, 404)
    assert _call(hub, "DELETE", f"/users/{E2E_USER}/server", CHECK_TOKEN)[0] not in (401, 403, 404)
    assert _call(hub, "GET", "/services", CHECK_TOKEN)[0] == 200
    assert _call(hub, "GET", "/users", CHECK_TOKEN)[0] == 200  # the monitor's users panel (read only)
    for _ in range(30):  # the server may still be stopping
        status = _call(hub, "DELETE", f"/users/{E2E_USER}", CHECK_TOKEN)[0]
        if status in (204, 404):
            break
        time.sleep(1)
    assert status == 204


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"/users/{VICTIM}/server", None),  # run code as alice
    ("DELETE", f"/users/{VICTIM}/server", None),
    ("POST", f"/users/{VICTIM}/tokens", {"note": "stolen"}),  # act as alice later
    ("DELETE", f"/users/{VICTIM}", None),
    ("PATCH", f"/users/{VICTIM}", {"admin": True}),
    ("POST", "/users/mallory", None),  # a new account
    ("POST", "/users", {"usernames": ["mallory"]}),
    ("PATCH", f"/users/{E2E_USER}", {"admin": True}),  # make its own user an admin
])
def test_the_check_token_cannot_touch_anyone_else(hub, method, path, body):
    if path.endswith(E2E_USER):
        _call(hub, "POST", f"/users/{E2E_USER}", CHECK_TOKEN)
    status, text = _call(hub, method, path, CHECK_TOKEN, body)
    assert status in (403, 404), (method, path, status, text[:300])
    victim = json.loads(_call(hub, "GET", f"/users/{VICTIM}", ADMIN_TOKEN)[1])
    assert not victim["admin"] and not victim.get("servers")
    assert _call(hub, "GET", "/users/mallory", ADMIN_TOKEN)[0] == 404

