"""The lab's site file: written through tomlkit's value quoting, with its comments and order kept."""

from __future__ import annotations

import tomllib

from hubwizard.lab.site import render_site


def _record(tmp_path, oidc=None) -> dict:
    odd = str(tmp_path / 'keys "lab"\\ä' / "id_ed25519")  # a quote, a backslash and a non-ASCII letter
    return {
        "name": "t1", "subnet": "172.30.0.0/24", "key": odd, "known_hosts": str(tmp_path / "known_hosts"),
        "pebble_cert": str(tmp_path / "pebble.pem"), "site_path": str(tmp_path / "t1.toml"),
        "registry": {"url": "172.30.0.9:5000"}, "acme": {"ip": "172.30.0.8"}, "oidc": oidc,
        "spec": {"user": "admin", "ssh_port": 22, "jump": True, "sudo_password": False},
        "machines": {"hub": {"role": "hub", "ip": "172.30.0.2"}, "node1": {"role": "node", "ip": "172.30.0.3"},
                     "node2": {"role": "spare", "ip": "172.30.0.4"}},
    }


def test_lab_site_values_round_trip(tmp_path):
    record = _record(tmp_path)
    text = render_site(record)
    data = tomllib.loads(text)
    assert [h["key"] for h in data["hosts"]] == [record["key"]] * 3
    assert data["hosts"][1]["jump"] == "hub" and data["hosts"][2]["spare"] is True
    assert data["oauth"] == {"provider": "dummy", "i_understand_anyone_can_log_in": True}
    assert "# host keys read from inside each machine" in text and text.index("[site]") < text.index("[[hosts]]")


def test_lab_site_with_its_openid_provider(tmp_path):
    data = tomllib.loads(render_site(_record(tmp_path, oidc={"ip": "172.30.0.7", "client_id": "hub-lab"})))
    assert data["oauth"]["provider"] == "generic" and data["oauth"]["client_id"] == "hub-lab"
    assert data["hub"]["admin_users"] and all(isinstance(u, str) for u in data["hub"]["allowed_users"])
