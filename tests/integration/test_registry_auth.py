"""The site's registry login goes to its own registry only (issue 12 item 11).

A fake registry on 127.0.0.1 records every Authorization header it is sent; the real Docker
engine pulls from it through the SDK as the hub-image and prepull steps do. Pulling an image of
ANOTHER registry (the base image from Docker Hub, here the fake) must not carry the site's
registry password; pulling from the site's own registry must (the control)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import threading
from types import SimpleNamespace

import pytest

from hubwizard.actions import hub_image
from tests.engine import docker_answers

pytestmark = pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
PASSWORD = "site-registry-secret-7f3a"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.headers.get("Authorization") or "")
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="fake"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_registry():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def _ctx(registry_url: str):
    from hubwizard.core.config import RegistrySection

    site = SimpleNamespace(registry=RegistrySection(url=registry_url, username="ci"))
    return SimpleNamespace(site=site, secrets={"registry_password": PASSWORD}, step="prepull",
                           host=SimpleNamespace(name="local"), emit=lambda e: None, progress=lambda *a: None)


def _try_pull(ctx, client, image: str) -> None:
    """The pull as the steps make it; the fake refuses it (an error in the stream or a 500)."""
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        assert hub_image._pull(ctx, client, image, "pull")


def _sent_password(seen: list[str]) -> bool:
    for header in seen:
        if header.startswith("Basic ") and PASSWORD in base64.b64decode(header[6:]).decode(errors="replace"):
            return True
    return False


def test_pull_from_another_registry_carries_no_site_login(fake_registry):
    import docker

    address, seen = fake_registry
    client = docker.from_env(timeout=60)
    try:
        _try_pull(_ctx("registry.site.internal:5000"), client, f"{address}/base/image:1")
    finally:
        client.close()
    assert seen, "the engine never reached the fake registry"
    assert not _sent_password(seen), seen


def test_pull_from_the_sites_registry_carries_its_login(fake_registry):
    """The control: the same pull, with the fake as the site's registry, does send the login,
    so the test above would see a leak if there were one."""
    import docker

    address, seen = fake_registry
    client = docker.from_env(timeout=60)
    try:
        _try_pull(_ctx(address), client, f"{address}/demo/hub:1")
    finally:
        client.close()
    assert _sent_password(seen), seen


def test_a_refused_pull_comes_back_as_text_for_the_steps_hints(fake_registry):
    """A mistyped image is refused at the engine's first answer (no stream yet): _pull returns the
    refusal as text (so prepull's "not found" hint applies), never a raw Docker exception."""
    import docker

    address, _seen = fake_registry
    client = docker.from_env(timeout=60)
    try:
        err = hub_image._pull(_ctx(address), client, f"{address}/demo/mistyped:nope", "pull")
    finally:
        client.close()
    assert err and f"{address}/demo/mistyped:nope" in err, err
    assert "Traceback" not in err and "APIError" not in err
