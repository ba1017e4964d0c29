"""The self-hosted registry as shipped: pull-only nodes, TLS with the site CA (issue 12 item 10).

The real Distribution registry (Debian's docker-registry, copied from the lab's support image)
and the real nginx of this machine run the configs the registry step renders, on 127.0.0.1, with
a certificate from a site CA made by actions/tls.py. The real Docker engine then attacks it the
way root on a compromised node would: logged in with the nodes' account it tries to push (and to
delete a manifest) and must be refused; its pull must work. The hub's push account is the control.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hubwizard.actions import registry, tls
from hubwizard.core.render import Facts
from tests.engine import docker_answers
from tests.unit.test_hub_actions import site

pytestmark = pytest.mark.skipif(not (docker_answers() and shutil.which("nginx") and shutil.which("htpasswd")),
                                reason="needs a Docker engine, nginx and htpasswd on this machine")
PUSH_USER, PUSH_PASSWORD = "hubadmin", "push-secret-31c9"
PULL_PASSWORD = "pull-secret-8e02"
REPO = "hubwizard-test/hub"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry_binary(tmp_path_factory) -> Path:
    """docker-registry from the lab's support image (no image can be pulled here)."""
    import docker

    client = docker.from_env(timeout=120)
    tags = [t for i in client.images.list(name="hubwizard-lab/support") for t in i.tags]
    if not tags:
        pytest.skip("no hubwizard-lab/support image (it holds docker-registry): `hubwizard lab` builds it")
    container = client.containers.create(tags[0], command=["true"])
    try:
        stream, _ = container.get_archive("/usr/bin/docker-registry")
        data = io.BytesIO(b"".join(stream))
    finally:
        container.remove(force=True)
        client.close()
    out = tmp_path_factory.mktemp("registry-bin")
    with tarfile.open(fileobj=data) as tar:
        tar.extractall(out, filter="data")
    binary = out / "docker-registry"
    binary.chmod(0o755)
    return binary


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {proc.stdout.read() if proc.stdout else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} does not listen on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def served(registry_binary, tmp_path_factory):
    """The shipped configs, rendered for 127.0.0.1, served by the real registry and nginx."""
    tmp = tmp_path_factory.mktemp("registry")
    port, upstream = _free_port(), _free_port()
    base = site()
    s = base.model_copy(update={"registry": base.registry.model_copy(update={
        "url": f"127.0.0.1:{port}", "username": PUSH_USER, "self_hosted": True, "insecure": False})})
    lay = registry.Layout(listen=f"127.0.0.1:{port}", upstream=f"127.0.0.1:{upstream}",
                          dir=str(tmp / "proxy"), storage=str(tmp / "storage"))
    registry_yml, nginx_conf = registry.render_configs(s, Facts(hub_ip="127.0.0.1"), lay)
    (tmp / "proxy").mkdir()
    (tmp / "registry.yml").write_text(registry_yml)
    (tmp / "proxy" / "server.conf").write_text(nginx_conf)
    ca = tls.SiteCA(tmp / "ca", "ws")
    ca.ensure()
    ips, names = registry.cert_names(s, Facts(hub_ip="127.0.0.1"))
    cert = tls.leaf(ca, registry.CERT_NAME, ips=ips, dns=names, role=tls.SERVER)
    (tmp / "proxy" / "cert.pem").write_bytes(cert.cert)
    (tmp / "proxy" / "key.pem").write_bytes(cert.key)
    for path, user, password, create in (("readers", PUSH_USER, PUSH_PASSWORD, "-c"),
                                         ("readers", s.registry.pull_username, PULL_PASSWORD, ""),
                                         ("pushers", PUSH_USER, PUSH_PASSWORD, "-c")):
        subprocess.run(["htpasswd", *([create] if create else []), "-iB", str(tmp / "proxy" / f"{path}.htpasswd"), user],
                       input=password, text=True, check=True, capture_output=True)
    (tmp / "nginx.conf").write_text(
        f"daemon off;\nuser root;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        f"events {{}}\nhttp {{\n  access_log {tmp}/access.log;\n"
        + "".join(f"  {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp}/proxy/server.conf;\n}}\n")
    subprocess.run(["nginx", "-t", "-c", str(tmp / "nginx.conf")], check=True, capture_output=True)
    procs = [subprocess.Popen([str(registry_binary), "serve", str(tmp / "registry.yml")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    try:
        _wait_port(upstream, procs[0], "docker-registry")
        procs.append(subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf")], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
        _wait_port(port, procs[1], "nginx")
        yield {"url": f"127.0.0.1:{port}", "port": port, "ca": ca, "site": s, "tmp": tmp}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)


def _docker(args: list[str], config: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The docker CLI with its own config folder (its logins never touch this machine's)."""
    config.mkdir(exist_ok=True)
    return subprocess.run(["docker", *args], input=stdin, text=True, capture_output=True, timeout=300,
                          env={**os.environ, "DOCKER_CONFIG": str(config)})


def _login(served, config: Path, user: str, password: str) -> None:
    res = _docker(["login", served["url"], "--username", user, "--password-stdin"], config, password)
    assert res.returncode == 0, res.stderr


@pytest.fixture
def image(served):
    """A one-file image tagged for the registry (made here: nothing can be pulled)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"hub image {time.time_ns()}\n".encode()
        info = tarfile.TarInfo("hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tags = [f"{served['url']}/{REPO}:good", f"{served['url']}/{REPO}:evil"]
    subprocess.run(["docker", "import", "-", tags[0]], input=buf.getvalue(), check=True, capture_output=True)
    subprocess.run(["docker", "tag", tags[0], tags[1]], check=True, capture_output=True)
    yield tags
    subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True)


def _api(served, method: str, path: str, user: str, password: str) -> int:
    """An HTTPS request to the registry, verified against the site CA."""
    context = ssl.create_default_context(cafile=str(served["ca"].cert_path))
    request = urllib.request.Request(f"https://{served['url']}{path}", method=method, headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_nodes_account_cannot_push_but_can_pull(served, image, tmp_path):
    good, evil = image
    pull_user = served["site"].registry.pull_username
    hub, node = tmp_path / "hub-docker", tmp_path / "node-docker"
    _login(served, hub, PUSH_USER, PUSH_PASSWORD)
    pushed = _docker(["push", good], hub)
    assert pushed.returncode == 0, pushed.stderr  # the control: the hub's account pushes

    _login(served, node, pull_user, PULL_PASSWORD)  # the nodes' account logs in...
    attack = _docker(["push", evil], node)  # ...and root on a node tries to replace the hub image
    assert attack.returncode != 0, attack.stdout
    assert "unauthorized" in (attack.stdout + attack.stderr).lower() or "denied" in (attack.stdout + attack.stderr)
    tags = _api(served, "GET", f"/v2/{REPO}/manifests/evil", PUSH_USER, PUSH_PASSWORD)
    assert tags == 404, "the nodes' account pushed a tag"
    assert _api(served, "DELETE", f"/v2/{REPO}/manifests/good", pull_user, PULL_PASSWORD) == 401
    assert _api(served, "GET", f"/v2/{REPO}/manifests/good", pull_user, PULL_PASSWORD) == 200

    subprocess.run(["docker", "rmi", "-f", good], capture_output=True)
    pulled = _docker(["pull", good], node)  # what the nodes do: pull with their account
    assert pulled.returncode == 0, pulled.stderr
    assert _docker(["image", "inspect", good], node).returncode == 0


def test_the_registry_speaks_tls_with_the_site_ca_only(served):
    # the site CA verifies the registry's certificate for its address
    context = ssl.create_default_context(cafile=str(served["ca"].cert_path))
    with socket.create_connection(("127.0.0.1", served["port"]), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
    # another CA does not: a stranger's certificate would be refused the same way
    other = tls.SiteCA(served["tmp"] / "other-ca", "other")
    other.ensure()
    context = ssl.create_default_context(cafile=str(other.cert_path))
    with pytest.raises(ssl.SSLCertVerificationError), \
            socket.create_connection(("127.0.0.1", served["port"]), timeout=10) as raw:
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    # no plain HTTP: the login header cannot be sent in clear and be answered
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{served['url']}/v2/", timeout=10)
    assert refused.value.code == 400  # nginx: "The plain HTTP request was sent to HTTPS port"
    # and a login is needed for everything, reads included
    assert _api(served, "GET", "/v2/", "stranger", "guess") == 401
