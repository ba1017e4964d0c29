"""Rendered files checked by the programs that read them.

- nginx: `nginx -t` on the rendered sites in a temporary prefix (never /etc/nginx), then nginx
  running them in a private network namespace: ACME webroot, HTTP->HTTPS redirect, proxy
  headers and the websocket upgrade to a stand-in hub on 127.0.0.1:8000.
- JupyterHub: the rendered jupyterhub_config.py loaded by JupyterHub itself
  (`JupyterHub.initialize`, database in a temp folder) for every provider and both tracks, and
  its spawn hook run on the real spawner object.
- bash/sh: `-n` on every script, and the scripts run against stand-ins for the host tools.
- dockerd loads the rendered daemon.json (private namespaces, own data folder), classic TLS
  included; `systemd-analyze verify` on the docker.service drop-in.
- NFS and autofs: nfs-ganesha, exportfs and `automount -m` themselves (installed, or Debian's
  packages unpacked into ~/.cache/hubwizard-test, never installed) read the rendered files in
  private mount and network namespaces (root needed); plus structural parses.

JupyterHub and its plugins come from the test interpreter when it has them, else from a venv
made once under ~/.cache/hubwizard-test/hubenv (HUBWIZARD_TEST_HUBENV overrides; pip needed).
Nothing here binds a port of this host or writes outside its temporary folders and caches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hubwizard.core.config import parse_site
from hubwizard.core.render import PATHS, Facts, generated_files, hub_users_json, template_context
from hubwizard.core.templating import render_asset

DATA = Path(__file__).resolve().parents[1] / "data"
SITE_TEXT = (DATA / "render-site.toml").read_text(encoding="utf-8")
PROVIDERS = ["dummy", "github", "google", "cilogon", "globus", "generic"]
HUB_PACKAGES = ["jupyterhub", "dockerspawner", "oauthenticator", "jupyterhub-idle-culler"]
HUB_MODULES = "import jupyterhub, dockerspawner, oauthenticator, jupyterhub_idle_culler"
AUTH_CLASSES = {
    "dummy": "DummyAuthenticator",
    "github": "GitHubOAuthenticator",
    "google": "GoogleOAuthenticator",
    "cilogon": "CILogonOAuthenticator",
    "globus": "GlobusOAuthenticator",
    "generic": "GenericOAuthenticator",
}


# The hosts are 10.0.0.10-12: exports go to the smallest network holding them (issue 12 item 3).
EXPORT_CLIENTS = "10.0.0.8/29"
DUMMY = 'provider = "dummy"\ni_understand_anyone_can_log_in = true'  # the open login must be asked for


def make_site(track: str = "swarm-mode", provider: str = "github", extra: str = ""):
    text = SITE_TEXT.replace('track = "swarm-mode"', f'track = "{track}"')
    text = text.replace('provider = "github"', DUMMY if provider == "dummy" else f'provider = "{provider}"')
    if provider == "generic":
        text += (
            'authorize_url = "https://id.example.org/auth"\n'
            'token_url = "https://id.example.org/token"\n'
            'userdata_url = "https://id.example.org/userinfo"\n'
        )
    return parse_site(text + extra)


def rendered(site, path: str) -> str:
    (f,) = [f for f in generated_files(site, Facts.offline(site)) if f.path == path and f.host in (None, "node1")]
    return f.content


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, check=False, **kw)


# -- nginx ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return path


def _nginx_test(nginx_bin: str, tmp_path: Path, asset: str) -> subprocess.CompletedProcess:
    """Render ``asset`` with the letsencrypt and webroot paths moved into tmp_path, then nginx -t."""
    site = make_site()
    ctx = template_context(site, Facts.offline(site))
    live = tmp_path / "letsencrypt" / "live"
    ctx["paths"] = {**ctx["paths"], "letsencrypt_live": str(live), "acme_webroot": str(tmp_path / "webroot")}
    site_conf = tmp_path / "sites-enabled" / "jupyterhub"
    site_conf.parent.mkdir(parents=True)
    site_conf.write_text(render_asset(asset, ctx), encoding="utf-8")
    (tmp_path / "webroot").mkdir()

    cert_dir = live / site.site.domain
    cert_dir.mkdir(parents=True)
    made = run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(cert_dir / "privkey.pem"), "-out", str(cert_dir / "fullchain.pem"),
            "-subj", f"/CN={site.site.domain}", "-addext", f"subjectAltName=DNS:{site.site.domain}",
        ]
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    for sub in ("logs", "tmp"):
        (tmp_path / sub).mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        textwrap.dedent(
            f"""\
            # the test's main config: everything in {tmp_path}, the rendered site included
            pid {tmp_path}/nginx.pid;
            user root;  # the workers read pytest's private temp folders
            error_log {tmp_path}/logs/error.log;
            events {{}}
            http {{
                access_log {tmp_path}/logs/access.log;
                client_body_temp_path {tmp_path}/tmp/body;
                proxy_temp_path {tmp_path}/tmp/proxy;
                fastcgi_temp_path {tmp_path}/tmp/fastcgi;
                uwsgi_temp_path {tmp_path}/tmp/uwsgi;
                scgi_temp_path {tmp_path}/tmp/scgi;
                include {site_conf};
            }}
            """
        ),
        encoding="utf-8",
    )
    return run([nginx_bin, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "logs" / "error.log")])


@pytest.mark.parametrize("asset", ["nginx.conf.j2", "nginx-http.conf.j2"])
def test_nginx_accepts_the_rendered_site(nginx_bin, tmp_path, asset):
    result = _nginx_test(nginx_bin, tmp_path, asset)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_nginx_refuses_a_missing_certificate(nginx_bin, tmp_path):
    """The reason the HTTP-only bootstrap site exists: the HTTPS site cannot load without a cert."""
    result = _nginx_test(nginx_bin, tmp_path, "nginx.conf.j2")
    assert result.returncode == 0
    for pem in (tmp_path / "letsencrypt").rglob("fullchain.pem"):
        pem.unlink()
    main = tmp_path / "nginx.conf"
    again = run([nginx_bin, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "logs" / "error.log")])
    assert again.returncode != 0 and "fullchain.pem" in again.stderr


# Runs inside a private network namespace next to nginx: a stand-in hub on 127.0.0.1:8000
# records what nginx forwards; the client side checks what a browser and certbot would see.
NGINX_PROBE = r"""
import http.client, http.server, json, socket, ssl, sys, threading, time
domain, cert = sys.argv[1], sys.argv[2]
seen = []

class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append({**{k.lower(): v for k, v in self.headers.items()}, "path": self.path})
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"hub")

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 8000), Hub)
threading.Thread(target=server.serve_forever, daemon=True).start()
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", 80), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)

out = {}
def http_get(path):
    c = http.client.HTTPConnection("127.0.0.1", 80, timeout=5)
    c.request("GET", path, headers={"Host": domain})
    r = c.getresponse()
    return [r.status, r.getheader("Location"), r.read().decode()]

out["acme"] = http_get("/.well-known/acme-challenge/token123")
out["http"] = http_get("/hub/login")

def https(request):
    ctx = ssl.create_default_context(cafile=cert)
    try:
        raw = socket.create_connection(("127.0.0.1", 443), timeout=5)
    except OSError as exc:
        return {"error": str(exc)}
    with ctx.wrap_socket(raw, server_hostname=domain) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return {"head": data.decode(errors="replace").split("\r\n\r\n")[0].split("\r\n"), "tls": s.version()}

out["https"] = https(f"GET /hub/api HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n")
out["https_backend"] = seen[-1] if seen else None
out["websocket"] = https(
    f"GET /user/alice/api/kernels/k1/channels HTTP/1.1\r\nHost: {domain}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
out["websocket_backend"] = seen[-1] if seen else None
print(json.dumps(out))
"""


def _nginx_behaviour(nginx_bin: str, tmp_path: Path, asset: str) -> dict:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip to run nginx in a private network namespace")
    assert _nginx_test(nginx_bin, tmp_path, asset).returncode == 0
    challenge = tmp_path / "webroot" / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / "token123").write_text("token123.key-authorization", encoding="utf-8")
    (tmp_path / "probe.py").write_text(NGINX_PROBE, encoding="utf-8")
    cert = next((tmp_path / "letsencrypt").rglob("fullchain.pem"))
    nginx = f"{nginx_bin} -p {tmp_path} -c {tmp_path}/nginx.conf -e {tmp_path}/logs/error.log"
    # a private network (no port of this host is used) and pid namespace (nothing outlives it)
    script = (
        f"ip link set lo up && {nginx} -g 'daemon off;' & "
        f"sleep 0.3; {sys.executable} {tmp_path}/probe.py {make_site().site.domain} {cert}"
    )
    result = run(["unshare", "-n", "-p", "-f", "--kill-child", "sh", "-c", script], timeout=60)
    assert result.returncode == 0, result.stderr + (tmp_path / "logs" / "error.log").read_text()
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_nginx_serves_acme_redirects_and_proxies_websockets(nginx_bin, tmp_path):
    """The rendered HTTPS site, running: what certbot, a browser and a kernel's websocket get."""
    out = _nginx_behaviour(nginx_bin, tmp_path, "nginx.conf.j2")
    assert out["acme"][0] == 200 and out["acme"][2] == "token123.key-authorization"
    assert out["http"][:2] == [301, "https://hub.example.org/hub/login"]
    head = out["https"]["head"]
    assert head[0] == "HTTP/1.1 200 OK" and out["https"]["tls"] in ("TLSv1.2", "TLSv1.3")
    assert any(h.lower().startswith("strict-transport-security:") for h in head)
    backend = out["https_backend"]
    assert backend["path"] == "/hub/api" and backend["host"] == "hub.example.org"
    assert backend["x-forwarded-proto"] == "https" and backend["x-real-ip"] == "127.0.0.1"
    assert out["websocket"]["head"][0] == "HTTP/1.1 101 Switching Protocols"
    ws = out["websocket_backend"]
    assert ws["upgrade"] == "websocket" and ws["connection"].lower() == "upgrade"


def test_nginx_bootstrap_site_answers_acme_only(nginx_bin, tmp_path):
    out = _nginx_behaviour(nginx_bin, tmp_path, "nginx-http.conf.j2")
    assert out["acme"][0] == 200 and out["acme"][2] == "token123.key-authorization"
    assert out["http"][0] == 503
    assert "error" in out["https"]  # nothing listens on 443 yet
    assert out["https_backend"] is None  # nothing reached the hub over plain HTTP


# -- JupyterHub ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hub_python() -> str:
    """A Python with JupyterHub, dockerspawner, oauthenticator and the idle culler."""
    if run([sys.executable, "-c", HUB_MODULES]).returncode == 0:
        return sys.executable
    venv = Path(os.environ.get("HUBWIZARD_TEST_HUBENV", Path.home() / ".cache" / "hubwizard-test" / "hubenv"))
    python = venv / "bin" / "python"
    if python.exists() and run([str(python), "-c", HUB_MODULES]).returncode == 0:
        return str(python)
    made = run([sys.executable, "-m", "venv", str(venv)])
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv for JupyterHub: {made.stderr[-500:]}")
    pip = run([str(python), "-m", "pip", "install", "-q", *HUB_PACKAGES], timeout=900)
    if pip.returncode != 0:
        pytest.skip(f"cannot install {' '.join(HUB_PACKAGES)} with pip: {pip.stderr[-500:]}")
    return str(python)


# Runs inside hub_python: initializes JupyterHub from the config, runs alice's spawn hook, and
# prints what it found as JSON on the last line.
PROBE = r"""
import asyncio, inspect, json, os, sys
from jupyterhub import orm
from jupyterhub.app import JupyterHub

async def main():
    app = JupyterHub()
    await app.initialize(["-f", sys.argv[1]])
    auth = app.authenticator
    user = app.users[orm.User.find(app.db, "alice")]
    spawner = user.spawner
    result = {
        "spawner": type(spawner).__name__,
        "image": spawner.image,
        "network": spawner.network_name,
        "cpu_limit": spawner.cpu_limit,
        "mem_limit": spawner.mem_limit,
        "notebook_dir": spawner.notebook_dir,
        "client_kwargs": spawner.client_kwargs,
        "tls_config": {k: list(v) if isinstance(v, tuple) else v for k, v in spawner.tls_config.items()},
        "placement": getattr(spawner, "extra_placement_spec", None),
        "volumes": spawner.volumes,
        "authenticator": type(auth).__name__,
        "client_id": getattr(auth, "client_id", None),
        "client_secret": getattr(auth, "client_secret", None),
        "callback": getattr(auth, "oauth_callback_url", None),
        "allowed": sorted(auth.allowed_users),
        "admins": sorted(auth.admin_users),
        "hub_ip": app.hub_ip,
        "hub_connect_ip": app.hub_connect_ip,
        "public_url": app.public_url,
        "services": {s.name: list(s.command) for s in app._service_map.values()},
        "roles": {r.name: sorted(r.scopes) for r in app.db.query(orm.Role)},
        "service_tokens": sorted(s.name for s in app.db.query(orm.Service) if s.api_tokens),
    }
    hook = spawner.pre_spawn_hook
    result["hook"] = hook.__name__ if hook else None
    if hook and os.environ.get("PROBE_FAKE_DOCKER"):
        # record what the quota helper would ask the Docker engine to run
        import docker

        class Containers:
            def run(self, image, command, **kwargs):
                result["docker_run"] = {"image": image, "command": command, **kwargs}

        docker.from_env = lambda: type("Client", (), {"containers": Containers()})()
    if hook and os.environ.get("PROBE_MANAGER_LISTS"):
        # the classic manager's answer to "containers" (no manager here): placement reads it
        listed = json.loads(os.environ["PROBE_MANAGER_LISTS"])

        async def manager(method, *args, **kwargs):
            assert method == "containers", method
            return listed

        spawner.docker = manager
    if hook:
        try:
            out = hook(spawner)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:  # what the hub would show the student: an HTTPError's text
            result["hook_error"] = [type(exc).__name__, getattr(exc, "status_code", None), getattr(exc, "log_message", "")]
            print(json.dumps(result))
            return
        spec = getattr(spawner, "extra_container_spec", {}) or spawner.extra_host_config
        result["mounts"] = [dict(m) for m in spec.get("mounts", [])]
        result["placed"] = [spawner.environment.get("constraint:node"), getattr(spawner, "host_ip", None)]
    print(json.dumps(result))

asyncio.run(main())
"""


def _load_in_jupyterhub(hub_python: str, tmp_path: Path, config: str, secret: str | None, squatter: str = "",
                        **extra_env: str) -> tuple[dict, str]:
    """JupyterHub loads the config and runs the spawn hook for alice; `squatter` names a plain
    file put in the NFS root first (where a user's folder would go)."""
    (tmp_path / "jupyterhub_config.py").write_text(config, encoding="utf-8")
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    for sub in ("secrets", "data", "nfs", "home"):
        (tmp_path / sub).mkdir()
    if squatter:
        (tmp_path / "nfs" / squatter).write_text("not a folder\n", encoding="utf-8")
    if secret is not None:
        (tmp_path / "secrets" / "oauth_client_secret").write_text(secret + "\n", encoding="utf-8")
    (tmp_path / "secrets" / "hubwizard_api_token").write_text("check-token-0123456789\n", encoding="utf-8")
    # the site's user lists where hub_users puts them: the swarm track's hub reads them at start-up
    (tmp_path / "data" / "hubwizard-users.json").write_text(hub_users_json(parse_site(SITE_TEXT)), encoding="utf-8")
    env = {
        **os.environ,
        "HUBWIZARD_SECRETS_DIR": str(tmp_path / "secrets"),
        "HUBWIZARD_DATA_DIR": str(tmp_path / "data"),
        "HUBWIZARD_NFS_ROOT": str(tmp_path / "nfs"),
        "HUBWIZARD_HOME_ROOT": str(tmp_path / "home"),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",  # the quota helper must find no engine
    }
    env.pop("HUBWIZARD_API_TOKEN", None)
    env.update(extra_env)
    result = run(
        [hub_python, str(tmp_path / "probe.py"), str(tmp_path / "jupyterhub_config.py")],
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("provider", PROVIDERS)
def test_jupyterhub_loads_the_swarm_mode_config(hub_python, tmp_path, provider):
    site = make_site("swarm-mode", provider)
    config = rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py")
    found, log = _load_in_jupyterhub(hub_python, tmp_path, config, secret="the-client-secret")

    assert "not recognized" not in log, log  # every option is one JupyterHub knows
    assert found["spawner"] == "SwarmSpawner"
    assert found["image"] == "jupyter/base-notebook:latest"
    assert found["network"] == "jupyterhub"
    assert found["cpu_limit"] == 2.0 and found["mem_limit"] == 4 * 1024**3
    assert found["placement"] == {"constraints": ["node.role == worker"]}
    assert found["hub_ip"] == "0.0.0.0" and found["hub_connect_ip"] == "jupyterhub"
    assert found["public_url"] == "https://hub.example.org/"
    assert found["authenticator"] == AUTH_CLASSES[provider]
    if provider == "dummy":
        assert found["callback"] is None
    else:
        assert found["callback"] == "https://hub.example.org/hub/oauth_callback"
        assert found["client_id"] == "Iv1.0123456789abcdef"
        assert found["client_secret"] == "the-client-secret"  # read from the secret file
    assert {"bob", "carol"} <= set(found["allowed"]) and found["admins"] == ["alice"]

    culler = found["services"]["idle-culler"]
    assert culler[1:] == ["-m", "jupyterhub_idle_culler", "--timeout=1800"]
    assert found["roles"]["idle-culler"] == ["delete:servers", "list:users", "read:servers", "read:users:activity"]
    assert "hubwizard-check" in found["service_tokens"]  # the end-to-end check's token, from its file
    check_role = found["roles"]["hubwizard-check"]  # changes its own test user only (SECURITY.md)
    assert "admin:servers" not in check_role and "access:servers!user=hubwizardcheck" in check_role

    # the spawn hook: alice's folder on the NFS root, owned by jovyan, and her NFS volume
    assert found["hook"] == "prepare_user_folder"
    folder = tmp_path / "nfs" / "alice"
    assert folder.is_dir()
    if os.geteuid() == 0:
        assert (folder.stat().st_uid, folder.stat().st_gid) == (1000, 100)
    (mount,) = found["mounts"]
    assert mount["Source"] == "jupyterhub-user-alice" and mount["Type"] == "volume"
    assert mount["Target"] == "/home/jovyan/work"
    driver = mount["VolumeOptions"]["DriverConfig"]
    assert driver["Name"] == "local"
    assert driver["Options"] == {"type": "nfs", "o": "addr=10.0.0.10,rw,nfsvers=4", "device": ":/var/nfs/alice"}
    # no Docker engine here: the quota helper fails, the spawn goes on, the log says why
    assert "quota '5G'" in log or "quota 5G" in log


def test_a_student_whose_folder_cannot_be_made_reads_a_clear_page(hub_python, tmp_path):
    """A file where alice's folder goes: the spawn stops with the hub's 500 page saying what to
    do (tornado shows an HTTPError's text, not other exceptions'); the log has path and fix."""
    site = make_site("swarm-mode", "github")
    config = rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py")
    found, log = _load_in_jupyterhub(hub_python, tmp_path, config, secret="s", squatter="alice")

    kind, status, message = found["hook_error"]
    assert (kind, status) == ("HTTPError", 500)
    assert "home folder could not be prepared" in message and "tell your instructor" in message
    assert "10.0.0.10" not in message and "/var/nfs" not in message  # no storage addresses for students
    assert "/var/nfs/alice on the NFS server could not be made a folder" in log and "move it away" in log


def _build_time_check(dockerfile: str, python: str, config: Path, scratch: Path) -> str:
    """The Dockerfile's RUN step that loads the config, as a shell script for this machine:
    its python3, config path and scratch folder pointed at the test's own."""
    lines = dockerfile.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("RUN mkdir -p /tmp/hubwizard-check"))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    script = "\n".join(lines[start:end + 1])[len("RUN "):]
    return (script.replace("python3 -c", f"{python} -c").replace("/srv/jupyterhub/jupyterhub_config.py", str(config))
            .replace("/tmp/hubwizard-check", str(scratch)))


@pytest.mark.parametrize("track", ["swarm-mode", "classic"])
def test_image_build_has_jupyterhub_load_the_config(hub_python, tmp_path, track):
    """The hub image's build step that has JupyterHub load the rendered config (so verify need
    not start a container): it passes on the rendered config and leaves no placeholder secret
    behind, and it stops the build on a broken config, saying so."""
    site = make_site(track, "github")
    dockerfile = rendered(site, "/srv/hubwizard/hub/Dockerfile")
    config, scratch = tmp_path / "jupyterhub_config.py", tmp_path / "check"
    config.write_text(rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py"))
    ok = run(["sh", "-c", _build_time_check(dockerfile, hub_python, config, scratch)])
    assert ok.returncode == 0 and "config loaded:" in ok.stdout, ok.stdout + ok.stderr
    assert not scratch.exists()
    config.write_text(config.read_text() + "\nc.JupyterHub.spawner_class = undefined_name\n")
    bad = run(["sh", "-c", _build_time_check(dockerfile, hub_python, config, scratch)])
    assert bad.returncode == 1 and "config did not load" in bad.stdout, bad.stdout + bad.stderr


def test_spawn_hook_runs_set_quota_on_the_host_through_docker(hub_python, tmp_path):
    """The quota helper: a privileged, network-less container of the hub image enters the host's
    mount namespace (PID 1) and runs the installed set_quota script for the user's folder."""
    site = make_site("swarm-mode", "dummy")
    config = rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py")
    found, log = _load_in_jupyterhub(hub_python, tmp_path, config, secret=None, PROBE_FAKE_DOCKER="1")
    assert found["docker_run"] == {
        "image": "10.0.0.10:5000/jupyterhub-hub:latest",
        "command": ["nsenter", "--target", "1", "--mount", "--", PATHS["set_quota"], "/var/nfs/alice", "5G"],
        "privileged": True,
        "pid_mode": "host",
        "network_mode": "none",
        "remove": True,
    }
    assert "not applied" not in log


def test_jupyterhub_loads_the_docker_spawner_variant_without_nfs_volumes(hub_python, tmp_path):
    """[hub] spawner = "docker" on the swarm-mode track; a lab whose nodes cannot mount NFS."""
    text = SITE_TEXT.replace('provider = "github"', DUMMY)
    site = parse_site(text.replace("idle_timeout = 1800", 'idle_timeout = 1800\nspawner = "docker"'))
    config = rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py")
    found, log = _load_in_jupyterhub(hub_python, tmp_path, config, secret=None, HUBWIZARD_NFS_VOLUMES="0")
    assert "not recognized" not in log, log
    assert found["spawner"] == "DockerSpawner" and found["network"] == "jupyterhub"
    assert found["placement"] is None
    assert found["mounts"] == [] and (tmp_path / "nfs" / "alice").is_dir()
    assert "home is NOT on NFS" in log  # said loudly at every spawn (issue 13 item 5)


def test_jupyterhub_refuses_to_start_without_the_oauth_secret(hub_python, tmp_path):
    site = make_site("swarm-mode", "github")
    config = rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py")
    with pytest.raises(AssertionError, match="oauth_client_secret is missing"):
        _load_in_jupyterhub(hub_python, tmp_path, config, secret=None)


@pytest.mark.parametrize("provider", ["dummy", "github", "generic"])
def test_jupyterhub_loads_the_classic_config(hub_python, tmp_path, provider):
    site = make_site("classic", provider)
    config = rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py")
    busy = json.dumps([{"Names": ["/node1/jupyter-bob"]}])  # the manager lists bob's server on node1
    found, log = _load_in_jupyterhub(hub_python, tmp_path, config, secret="the-client-secret",
                                     PROBE_MANAGER_LISTS=busy)

    assert "not recognized" not in log, log
    assert found["spawner"] == "DockerSpawner"
    assert found["client_kwargs"] == {"base_url": "tcp://10.0.0.10:4000"}
    assert found["tls_config"] == {
        "client_cert": ["/etc/docker/tls/client/cert.pem", "/etc/docker/tls/client/key.pem"],
        "ca_cert": "/etc/docker/tls/client/ca.pem",
        "verify": True,
    }
    assert found["volumes"] == {"/home/{username}": "/home/jovyan/work"}
    assert found["hub_ip"] == "10.0.0.10"
    assert found["authenticator"] == AUTH_CLASSES[provider]
    assert "idle-culler" in found["services"]
    assert found["hook"] == "prepare_home" and (tmp_path / "home" / "alice").is_dir()
    # spread: alice goes to the node with fewer servers, published on its internal address only
    assert found["placed"] == ["=node2", "10.0.0.12"]


# -- shell scripts ---------------------------------------------------------------------------


def _scripts(site) -> dict[str, str]:
    return {f.path: f.content for f in generated_files(site, Facts.offline(site)) if f.mode & 0o111}


def test_every_rendered_script_parses():
    for track in ("swarm-mode", "classic"):
        scripts = _scripts(make_site(track))
        assert scripts
        for path, content in scripts.items():
            shell = content.splitlines()[0].removeprefix("#!")
            assert shell in ("/bin/sh", "/bin/bash"), path
            for interpreter in {shell, "bash"}:
                result = run([interpreter, "-n"], input=content)
                assert result.returncode == 0, f"{interpreter} -n {path}: {result.stderr}"


def _fake_tools(bin_dir: Path, tools: dict[str, str]) -> dict[str, str]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_reload_hook_reloads_nginx_only_for_our_domain(tmp_path):
    site = make_site()
    script = tmp_path / "reload-nginx.sh"
    script.write_text(rendered(site, PATHS["certbot_deploy_hook"]), encoding="utf-8")
    calls = tmp_path / "calls"
    env = _fake_tools(
        tmp_path / "bin",
        {
            "nginx": f'echo "nginx $*" >> {calls}',
            "systemctl": f'echo "systemctl $*" >> {calls}',
        },
    )
    other = run(["sh", str(script)], env={**env, "RENEWED_DOMAINS": "other.example.org"})
    assert other.returncode == 0 and not calls.exists()
    ours = run(["sh", str(script)], env={**env, "RENEWED_DOMAINS": "www.example.org hub.example.org"})
    assert ours.returncode == 0, ours.stderr
    assert calls.read_text().splitlines() == ["nginx -t -q", "systemctl is-active --quiet nginx", "systemctl reload nginx"]


def _quota_script(tmp_path: Path, storage: Path) -> Path:
    site = make_site()
    site = site.model_copy(update={"storage": site.storage.model_copy(update={"path": str(storage)})})
    script = tmp_path / "set_quota.sh"
    script.write_text(render_asset("set_quota.sh.j2", template_context(site, Facts.offline(site))), encoding="utf-8")
    script.chmod(0o755)
    return script


def _quota_env(tmp_path: Path, *, fstype="xfs", options="rw,relatime,attr2,inode64,prjquota", xfs_quota=True):
    log = tmp_path / "xfs_quota.log"
    tools = {
        "zcat": "echo CONFIG_XFS_QUOTA=y",
        "findmnt": (
            'case "$*" in *TARGET*) echo /srv/xfs ;; *FSTYPE*) echo ' + fstype + " ;; *OPTIONS*) echo " + options + " ;; esac"
        ),
    }
    if xfs_quota:
        tools["xfs_quota"] = f'echo "xfs_quota $*" >> {log}'
    env = _fake_tools(tmp_path / "bin", tools)
    env["HUBWIZARD_PROJID"] = str(tmp_path / "projid")
    env["HUBWIZARD_PROJECTS"] = str(tmp_path / "projects")
    return env, log


def test_set_quota_records_the_project_and_sets_the_limit(tmp_path):
    storage = tmp_path / "nfs"
    (storage / "alice").mkdir(parents=True)
    (storage / "bob").mkdir()
    script = _quota_script(tmp_path, storage)
    env, log = _quota_env(tmp_path)

    first = run(["bash", str(script), str(storage / "alice")], env=env)
    assert first.returncode == 0, first.stderr
    (projid,) = (tmp_path / "projid").read_text().splitlines()
    name, pid = projid.split(":")
    assert name == "hubwizard-alice" and int(pid) >= 100000
    assert (tmp_path / "projects").read_text().splitlines() == [f"{pid}:{storage}/alice"]
    calls = log.read_text().splitlines()
    assert calls[0].endswith("-c project -s hubwizard-alice /srv/xfs")
    assert calls[1].endswith("-c limit -p bhard=5G hubwizard-alice /srv/xfs")
    assert f"-D {tmp_path}/projects -P {tmp_path}/projid" in calls[0]

    again = run(["bash", str(script), str(storage / "alice"), "7G"], env=env)  # idempotent, new size
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "projid").read_text().splitlines() == [projid]
    assert len((tmp_path / "projects").read_text().splitlines()) == 1
    assert log.read_text().splitlines()[-1].endswith("-c limit -p bhard=7G hubwizard-alice /srv/xfs")

    assert run(["bash", str(script), str(storage / "bob")], env=env).returncode == 0
    ids = [line.split(":")[1] for line in (tmp_path / "projid").read_text().splitlines()]
    assert len(set(ids)) == 2


@pytest.mark.parametrize(
    ("fstype", "options", "code", "message"),
    [
        ("ext4", "rw,relatime", 3, "not XFS"),
        ("xfs", "rw,relatime,attr2,inode64,noquota", 3, "add pquota to its options in /etc/fstab"),
    ],
)
def test_set_quota_refuses_a_filesystem_without_project_quotas(tmp_path, fstype, options, code, message):
    storage = tmp_path / "nfs"
    (storage / "alice").mkdir(parents=True)
    script = _quota_script(tmp_path, storage)
    env, log = _quota_env(tmp_path, fstype=fstype, options=options)
    result = run(["bash", str(script), str(storage / "alice")], env=env)
    assert result.returncode == code and message in result.stderr
    assert not log.exists()


def test_set_quota_refuses_bad_arguments(tmp_path):
    storage = tmp_path / "nfs"
    (storage / "alice").mkdir(parents=True)
    (storage / "Bad Name").mkdir()
    script = _quota_script(tmp_path, storage)
    env, _ = _quota_env(tmp_path)
    for args in ([], [str(storage / "Bad Name")], [str(storage / "alice"), "lots"], ["/etc"], [str(storage / "nobody")]):
        result = run(["bash", str(script), *args], env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert "hubwizard-set-quota:" in result.stderr


def test_set_quota_on_this_kernel_says_what_is_missing(tmp_path):
    """The real tools of this host: on a kernel without XFS quota support (the lab's), exit 4."""
    config = Path("/proc/config.gz")
    if not config.exists() or not shutil.which("findmnt"):
        pytest.skip("no /proc/config.gz or findmnt here")
    kernel = run(["sh", "-c", "zcat /proc/config.gz | grep XFS_QUOTA"]).stdout
    storage = tmp_path / "nfs"
    (storage / "alice").mkdir(parents=True)
    script = _quota_script(tmp_path, storage)
    env = {**os.environ, "HUBWIZARD_PROJID": str(tmp_path / "projid"), "HUBWIZARD_PROJECTS": str(tmp_path / "p")}
    result = run(["bash", str(script), str(storage / "alice")], env=env)
    if "# CONFIG_XFS_QUOTA is not set" in kernel:
        assert result.returncode == 4 and "no XFS quota support" in result.stderr
    else:  # tmp is not an XFS filesystem with pquota here
        assert result.returncode == 3, result.stderr


def test_a_hostile_storage_path_stays_one_word_when_the_script_runs(tmp_path):
    marker = tmp_path / "pwned"
    site = make_site()
    value = f"/x$(touch {marker});touch {marker}"
    bad = site.model_copy(update={"storage": site.storage.model_copy(update={"path": value})})
    script = tmp_path / "q.sh"
    script.write_text(render_asset("set_quota.sh.j2", template_context(bad, Facts.offline(site))), encoding="utf-8")
    result = run(["bash", str(script)])
    assert result.returncode == 2 and not marker.exists()


# -- dockerd, systemd -----------------------------------------------------------------------


@pytest.mark.parametrize("track", ["swarm-mode", "classic"])
def test_daemon_json_is_json(tmp_path, track):
    path = tmp_path / "daemon.json"
    path.write_text(rendered(make_site(track), PATHS["daemon_json"]), encoding="utf-8")
    result = run([sys.executable, "-m", "json.tool", str(path)])
    assert result.returncode == 0, result.stderr
    allowed = {"log-driver", "log-opts", "insecure-registries", "tlsverify", "tlscacert", "tlscert", "tlskey"}
    assert set(json.loads(path.read_text())) <= allowed


def _openssl(*args: str) -> None:
    result = run(["openssl", *args])
    assert result.returncode == 0, result.stderr


def _docker_tls_files(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as the classic track's
    TLS step makes them (file names of daemon.json and of the hub's client folder)."""
    folder.mkdir(parents=True)
    client = folder / "client"
    client.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
             "-keyout", str(folder / "ca-key.pem"), "-out", str(folder / "ca.pem"))  # fmt: skip
    for name, key, cert, ext in (
        ("server", folder / "server-key.pem", folder / "server-cert.pem", "subjectAltName=IP:127.0.0.1"),
        ("client", client / "key.pem", client / "cert.pem", "extendedKeyUsage=clientAuth"),
    ):
        csr = folder / f"{name}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        extfile = folder / f"{name}.ext"
        extfile.write_text(ext + "\n", encoding="utf-8")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca-key.pem"),
                 "-CAcreateserial", "-days", "2", "-extfile", str(extfile), "-out", str(cert))  # fmt: skip
    shutil.copy(folder / "ca.pem", client / "ca.pem")


@pytest.mark.parametrize("track", ["swarm-mode", "classic"])
def test_dockerd_starts_with_the_rendered_daemon_json(tmp_path, track):
    """dockerd itself loads the rendered daemon.json (it refuses unknown keys and bad values),
    in private namespaces with its own data folder; the classic track's TLS settings serve a
    client holding a certificate of the CA and refuse one without."""
    dockerd, docker = shutil.which("dockerd"), shutil.which("docker")
    if not dockerd or not docker or os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs dockerd, the docker client, root and unshare")
    site = make_site(track)
    ctx = template_context(site, Facts.offline(site))
    tls = tmp_path / "tls"
    ctx["paths"] = {**ctx["paths"], "docker_tls": str(tls)}
    config = tmp_path / "daemon.json"
    config.write_text(render_asset("daemon.json.j2", ctx), encoding="utf-8")
    hosts = f"-H unix://{tmp_path}/docker.sock"
    client = f"{docker} -H unix://{tmp_path}/docker.sock"
    checks = f"{client} info --format '{{{{json .RegistryConfig.IndexConfigs}}}} {{{{.LoggingDriver}}}}'"
    if track == "classic":
        _docker_tls_files(tls)
        hosts += " -H tcp://127.0.0.1:2376"  # as the drop-in's flag does with the internal address
        c = tls / "client"
        tcp = f"{docker} -H tcp://127.0.0.1:2376"
        checks += (
            f" && {tcp} --tlsverify --tlscacert {c}/ca.pem --tlscert {c}/cert.pem --tlskey {c}/key.pem version"
            " --format 'TLS-CLIENT-OK {{.Server.Version}}'"
            f" && ! {tcp} --tlsverify --tlscacert {c}/ca.pem version >/dev/null 2>&1 && echo NO-CERT-REFUSED"
        )
    daemon = (
        f"{dockerd} --config-file {config} --data-root {tmp_path}/root --exec-root {tmp_path}/exec {hosts}"
        f" --pidfile {tmp_path}/docker.pid --iptables=false --bridge=none --storage-driver=vfs"
    )
    script = (
        f"mount --make-rprivate / && ip link set lo up && ({daemon} > {tmp_path}/dockerd.log 2>&1 &) ; "
        f"for i in $(seq 1 120); do {client} version >/dev/null 2>&1 && break; sleep 0.5; done; {checks}"
    )
    result = run(["unshare", "-m", "-n", "-p", "-f", "--kill-child", "sh", "-c", script], timeout=120)
    log = (tmp_path / "dockerd.log").read_text(encoding="utf-8", errors="replace")
    assert result.returncode == 0, result.stdout + result.stderr + log[-3000:]
    registries, driver = result.stdout.splitlines()[0].rsplit(" ", 1)
    assert driver == "json-file"
    assert json.loads(registries)["10.0.0.10:5000"]["Secure"] is False
    if track == "classic":
        assert "TLS-CLIENT-OK" in result.stdout and "NO-CERT-REFUSED" in result.stdout


def test_systemd_accepts_the_docker_dropin(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    packaged = Path("/lib/systemd/system/docker.service")
    if packaged.exists() and Path("/lib/systemd/system/docker.socket").exists():
        unit = packaged.read_text(encoding="utf-8")
    else:  # the shape of Debian's unit
        unit = "[Unit]\nDescription=Docker\n[Service]\nType=notify\nExecStart=/bin/true -H fd://\n"
    if not Path("/usr/sbin/dockerd").exists():
        pytest.skip("dockerd not installed: systemd-analyze verify checks that ExecStart exists")
    (tmp_path / "hwtest-docker.service").write_text(unit, encoding="utf-8")
    dropins = tmp_path / "hwtest-docker.service.d"
    dropins.mkdir()
    (dropins / "hubwizard.conf").write_text(rendered(make_site("classic"), PATHS["docker_dropin"]), encoding="utf-8")
    result = run(["systemd-analyze", "verify", str(tmp_path / "hwtest-docker.service")])
    assert result.returncode == 0, result.stderr
    assert "hubwizard.conf" not in result.stderr


# -- NFS and autofs --------------------------------------------------------------------------


def parse_ganesha(text: str) -> dict:
    """ganesha's config grammar, small: ``NAME { key = value; ... NAME { ... } }``; '#' comments."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\{|\}|=|;|[^\s{};=#]+|#[^\n]*", text)
    tokens = [t for t in tokens if not t.startswith("#")]
    pos = 0

    def block() -> dict:
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != "}":
            name = tokens[pos]
            pos += 1
            assert pos < len(tokens), f"{name} ends the file"
            if tokens[pos] == "{":
                pos += 1
                out.setdefault(name, []).append(block())
                assert pos < len(tokens) and tokens[pos] == "}", f"unclosed block {name}"
                pos += 1
            else:
                assert tokens[pos] == "=", f"expected '=' after {name}, got {tokens[pos]!r}"
                pos += 1
                value = []
                while pos < len(tokens) and tokens[pos] != ";":
                    assert tokens[pos] not in "{}=", f"bad value for {name}"
                    value.append(tokens[pos])
                    pos += 1
                assert pos < len(tokens), f"{name}: missing ';'"
                pos += 1
                assert name not in out, f"{name} set twice"
                out[name] = " ".join(value).replace(" ,", ",")
        return out

    tree = block()
    assert pos == len(tokens), "unbalanced braces"
    return tree


def test_ganesha_conf_structure():
    conf = parse_ganesha(rendered(make_site(), PATHS["ganesha_conf"]))
    (export,) = conf["EXPORT"]
    assert export["Path"] == "/var/nfs" and export["Pseudo"] == "/var/nfs"
    assert export["Protocols"] == "3, 4" and conf["NFS_CORE_PARAM"][0]["Protocols"] == "3, 4"
    assert export["Squash"] == "All_Squash"  # no client is root on the share (issue 12 item 2)
    assert export["Anonymous_Uid"] == "1000" and export["Anonymous_Gid"] == "100"
    assert export["Access_Type"] == "None" and conf["EXPORT_DEFAULTS"][0]["Access_Type"] == "None"
    assert export["FSAL"] == [{"Name": "VFS"}]
    (client,) = export["CLIENT"]
    assert client == {"Clients": EXPORT_CLIENTS, "Access_Type": "RW"}
    assert conf["NFS_CORE_PARAM"][0]["Enable_RQUOTA"] == "false"
    with pytest.raises(AssertionError):
        parse_ganesha("EXPORT { Path = /x; ")


def debian_tool(program: str, packages: list[str]) -> Path:
    """The root folder holding ``program``: / when it is installed, else Debian's packages
    unpacked (`apt-get download` + `dpkg-deb -x`, never installed) into a cache folder."""
    for prefix in ("usr/sbin", "usr/bin", "sbin"):
        if (Path("/") / prefix / program).exists():
            return Path("/")
    if os.geteuid() != 0 or not shutil.which("apt-get") or not shutil.which("unshare"):
        pytest.skip(f"{program} is not installed and cannot be unpacked here (needs root, apt-get, unshare)")
    cache = Path.home() / ".cache" / "hubwizard-test" / packages[0]
    root = cache / "root"
    if not any((root / prefix / program).exists() for prefix in ("usr/sbin", "usr/bin", "sbin")):
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        got = run(["apt-get", "download", *packages], cwd=debs, timeout=300)
        if got.returncode != 0:
            pytest.skip(f"apt-get download {' '.join(packages)} failed: {got.stderr[-300:]}")
        for deb in debs.glob("*.deb"):
            assert run(["dpkg-deb", "-x", str(deb), str(root)]).returncode == 0
    return root


def private_run(root: Path, etc: Path, command: str, *, tmpfs: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    """Run ``command`` in private mount and network namespaces: ``etc`` over /etc, the unpacked
    libraries over the system's (for the plugins programs load from fixed paths), and a tmpfs
    on each of ``tmpfs``. Nothing of this host changes, no port is opened on it."""
    setup = ["mount --make-rprivate /", f"mount --bind {etc} /etc"]
    env = dict(os.environ)
    libdir = root / "usr" / "lib" / "x86_64-linux-gnu"
    if root != Path("/") and libdir.is_dir():
        setup.append(f"mount -t overlay overlay -o lowerdir={libdir}:/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu")
        env["LD_LIBRARY_PATH"] = f"{libdir}:{root / 'usr' / 'lib' / 'ganesha'}"
    setup += [f"mount -t tmpfs tmpfs {path}" for path in tmpfs]
    return run(["unshare", "-m", "-n", "sh", "-c", " && ".join(setup) + " && " + command], env=env, **kw)


def copy_etc(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True, dirs_exist_ok=True)
    return etc


def test_ganesha_builds_the_rendered_export(tmp_path):
    """nfs-ganesha 4.x reads the rendered ganesha.conf and creates the export for the subnet.

    It stops at RPC registration (no rpcbind in its namespace), after it has read the exports.
    """
    root = debian_tool(
        "ganesha.nfsd", ["nfs-ganesha", "nfs-ganesha-vfs", "libntirpc4.3", "libnfsidmap1", "liburcu8", "libwbclient0"]
    )
    site = make_site()
    export = tmp_path / "export"
    export.mkdir()
    site = site.model_copy(update={"storage": site.storage.model_copy(update={"path": str(export)})})
    conf = render_asset("ganesha.conf.j2", template_context(site, Facts.offline(site)))
    if root != Path("/"):
        plugins = f"    Plugins_Dir = {root / 'usr' / 'lib' / 'x86_64-linux-gnu' / 'ganesha'};"
        conf = conf.replace("    Enable_RQUOTA = false;", "    Enable_RQUOTA = false;\n" + plugins)
    conf += f"\nNFSV4 {{ RecoveryRoot = {tmp_path / 'recovery'}; Graceless = true; }}\n"
    conf += "LOG { Default_Log_Level = INFO; }\n"
    (tmp_path / "ganesha.conf").write_text(conf, encoding="utf-8")
    etc = copy_etc(tmp_path)  # libnfsidmap wants /etc/idmapd.conf
    (etc / "idmapd.conf").write_text("[General]\nDomain = localdomain\n", encoding="utf-8")
    log = tmp_path / "ganesha.log"
    daemon = root / "usr" / "bin" / "ganesha.nfsd"
    private_run(root, etc, f"timeout 20 {daemon} -F -f {tmp_path}/ganesha.conf -L {log} -p {tmp_path}/pid", timeout=60)
    text = log.read_text(encoding="utf-8")
    assert "Configuration file successfully parsed" in text, text[-3000:]
    assert "Config File" not in text, text  # ganesha names every unknown or bad line of the file
    assert f"Export 1 created at pseudo ({export}) with path ({export})" in text, text[-3000:]
    # every client squashed to jovyan (issue 12 item 2); the pseudo root "/" stays no_root_squash
    assert re.search(r"Export 1 created at .*perms \(options=\S+ all_squash .*anon_uid=\s*1000, anon_gid=\s*100,", text), text
    assert f"NETWORK_CLIENT: {EXPORT_CLIENTS}" in text


@pytest.mark.parametrize("track", ["swarm-mode", "classic"])
def test_exportfs_accepts_the_rendered_exports(tmp_path, track):
    """nfs-utils' exportfs reads the rendered /etc/exports.d file (kernel nfsd not needed)."""
    root = debian_tool("exportfs", ["nfs-kernel-server"])
    export = tmp_path / "export"
    export.mkdir()
    site = make_site(track)
    if track == "swarm-mode":
        site = site.model_copy(update={"storage": site.storage.model_copy(update={"path": str(export)})})
    content = render_asset(
        "exports.j2" if track == "swarm-mode" else "classic/exports.j2", template_context(site, Facts.offline(site))
    )
    etc = copy_etc(tmp_path)
    (etc / "exports").write_text("", encoding="utf-8")
    (etc / "exports.d").mkdir(exist_ok=True)
    (etc / "exports.d" / "hubwizard.exports").write_text(content, encoding="utf-8")
    exportfs = next(p for p in (root / "usr/sbin/exportfs", root / "sbin/exportfs") if p.exists())
    result = private_run(root, etc, f"mkdir -p /var/lib/nfs && {exportfs} -ra && {exportfs} -v", tmpfs=("/var/lib",), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "exportfs:" not in result.stderr, result.stderr
    path = str(export) if track == "swarm-mode" else "/home"
    words = result.stdout.split()  # a long path puts the client on the next line
    assert len(words) == 2 and words[0] == path and words[1].startswith(f"{EXPORT_CLIENTS}("), result.stdout
    line = words[1]
    assert ",root_squash," in line + "," and ",rw," in line and "sync" in line
    if track == "swarm-mode":  # every client acts as jovyan (issue 12 item 2)
        assert ",all_squash" in line and "anonuid=1000," in line and "anongid=100," in line, line

    # and it would say so if the file were wrong
    (etc / "exports.d" / "hubwizard.exports").write_text(f"{path} 10.0.0.0/24(rw,bogus)\n", encoding="utf-8")
    bad = private_run(root, etc, f"mkdir -p /var/lib/nfs && {exportfs} -ra", tmpfs=("/var/lib",), timeout=60)
    assert bad.returncode != 0 and 'unknown keyword "bogus"' in bad.stderr


def test_automount_reads_the_rendered_maps(tmp_path):
    """autofs' `automount -m` dumps the maps it would use: /home from /etc/auto.home."""
    root = debian_tool("automount", ["autofs"])
    site = make_site("classic")
    etc = copy_etc(tmp_path)
    conffiles = root / "usr" / "share" / "autofs" / "conffiles"
    if root != Path("/") or not (etc / "auto.master").exists():
        shutil.copy(conffiles / "auto.master", etc / "auto.master")  # the distribution's: +dir:/etc/auto.master.d
        shutil.copy(conffiles / "autofs.conf", etc / "autofs.conf")
    (etc / "auto.master.d").mkdir(exist_ok=True)
    for path in (PATHS["auto_master"], PATHS["auto_home"]):
        target = etc / Path(path).relative_to("/etc")
        target.write_text(rendered(site, path), encoding="utf-8")
    automount = next(p for p in (root / "usr/sbin/automount", root / "sbin/automount") if p.exists())
    result = private_run(root, etc, f"{automount} -m", timeout=60)
    assert result.returncode == 0, result.stderr
    dump = result.stdout
    assert "Mount point: /home" in dump and "map: /etc/auto.home" in dump, dump
    assert "* | -fstype=nfs,rw,hard,nosuid 10.0.0.10:/home/&" in dump, dump


EXPORT_LINE = re.compile(r"^(/[^\s]*)((?: [0-9a-zA-Z.:/-]+\([a-z_0-9=,]+\))+)$")


@pytest.mark.parametrize("track", ["swarm-mode", "classic"])
def test_exports_have_the_exports5_shape(track):
    content = rendered(make_site(track), PATHS["exports"])
    lines = [line for line in content.splitlines() if line and not line.startswith("#")]
    (line,) = lines
    match = EXPORT_LINE.match(line)
    assert match, line
    for client in match.group(2).split():
        host, opts = client[:-1].split("(")
        assert host == EXPORT_CLIENTS
        assert {"rw", "sync", "no_subtree_check"} <= set(opts.split(","))


def test_autofs_maps_have_the_autofs5_shape():
    site = make_site("classic")
    master = [x for x in rendered(site, PATHS["auto_master"]).splitlines() if x and not x.startswith("#")]
    assert master == ["/home /etc/auto.home --timeout=600"]
    home = [x for x in rendered(site, PATHS["auto_home"]).splitlines() if x and not x.startswith("#")]
    (entry,) = home
    key, options, location = entry.split()
    assert key == "*" and options.startswith("-fstype=nfs,") and location == "10.0.0.10:/home/&"
