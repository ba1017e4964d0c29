"""The lab's site file logs in through the lab's OpenID provider by default (generic OIDC, the
client secret in the secrets file), and with the open dummy login only when asked for."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from hubwizard.core.config import load_site
from hubwizard.core.secrets import write_secrets
from hubwizard.lab import oidc as lab_oidc
from hubwizard.lab.site import write_site
from hubwizard.lab.spec import LabSpec


def _record(oidc: dict | None) -> dict:
    spec = LabSpec(name="x", nodes=1)
    return {
        "name": "x",
        "spec": {**spec.__dict__},
        "subnet": "172.30.0.0/16",
        "machines": {"hub": {"ip": "172.30.0.3", "role": "hub"}, "node1": {"ip": "172.30.0.4", "role": "node"}},
        "registry": {"url": "172.30.0.2:5000"},
        "acme": {"ip": "172.30.0.6"},
        "oidc": oidc,
        "key": "/keys/id_ed25519",
        "known_hosts": "/keys/known_hosts",
        "pebble_cert": "/keys/pebble-cert.pem",
    }


def test_lab_site_uses_the_labs_openid_provider(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    write_site(path, _record({"ip": "172.30.0.7", "client_id": lab_oidc.CLIENT_ID}))
    write_secrets(path, {"registry_password": "r", "oauth_client_secret": "s3cret-client"})
    site = load_site(path, check_files=False)
    assert site.oauth.provider == "generic" and site.oauth.client_id == lab_oidc.CLIENT_ID
    assert site.oauth.authorize_url == "http://172.30.0.7:9400/oauth2/authorize"
    assert site.oauth.token_url == "http://172.30.0.7:9400/oauth2/token"
    assert site.oauth.userdata_url == "http://172.30.0.7:9400/userinfo"
    assert site.hub.admin_users == ["teacher"] and site.hub.allowed_users == ["student1", "student2"]
    assert lab_oidc.OUTSIDER not in site.hub.allowed_users
    assert "s3cret-client" not in path.read_text()
    assert stat.S_IMODE((tmp_path / "x.secrets.toml").stat().st_mode) == 0o600


def test_dummy_login_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    write_site(path, _record(None))
    site = load_site(path, check_files=False)
    assert site.oauth.provider == "dummy" and site.oauth.i_understand_anyone_can_log_in
    assert LabSpec().dummy_login is False


def test_provider_registers_exactly_the_hub_as_client() -> None:
    conf = json.loads(lab_oidc.provider_config("sec", "https://hub.lab.test/hub/oauth_callback"))
    assert conf["client_id"] == lab_oidc.CLIENT_ID and conf["client_secret"] == "sec"
    assert conf["redirect_uris"] == ["https://hub.lab.test/hub/oauth_callback"]
    names = {u["preferred_username"] for u in conf["users"]}
    assert names == {"teacher", "student1", "student2", "mallory"}
    compile(lab_oidc.SERVER, "oidc-lab.py", "exec")  # the container's program is valid Python


def test_a_class_of_students_is_known_to_the_provider_and_allowed_on_the_hub(tmp_path: Path) -> None:
    """`lab up --students 50`: the provider knows student1..student50 and the site allows them."""
    conf = json.loads(lab_oidc.provider_config("sec", "https://hub.lab.test/hub/oauth_callback", 50))
    names = {u["preferred_username"] for u in conf["users"]}
    assert {"teacher", "mallory", "student1", "student50"} <= names and len(names) == 52
    record = _record({"ip": "10.0.0.9", "client_id": lab_oidc.CLIENT_ID, "students": 50})
    path = tmp_path / "site.toml"
    write_site(path, record)
    site = load_site(path, check_files=False)
    assert site.hub.allowed_users == list(lab_oidc.students(50))
    assert lab_oidc.OUTSIDER not in site.hub.allowed_users
