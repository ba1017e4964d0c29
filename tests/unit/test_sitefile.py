"""Writing a site back to TOML and the per-answer checks shared by init and the wizard."""

from __future__ import annotations

import pytest

from hubwizard.core import sitefile
from hubwizard.core.config import load_site
from hubwizard.core.errors import ConfigError

DRAFT = {"site": {"name": "ws", "domain": "hub.example.org", "email": "a@example.org"},
         "hosts": [{"name": "hub", "address": "10.0.0.1", "role": "hub", "user": "ubuntu"},
                   {"name": "node1", "address": "node1.internal", "role": "node", "jump": "hub", "port": 2222}],
         "quotas": {"enabled": True, "default": "5G"}, "hub": {"admin_users": ["alice"]},
         "oauth": {"provider": "github", "client_id": "Iv1.abc"}}


def test_round_trip(tmp_path):
    path = sitefile.write(tmp_path / "s.toml", DRAFT)
    site = load_site(path)
    assert site.hosts[1].jump == "hub" and site.hosts[1].port == 2222 and site.quotas.default == "5G"
    assert site.hub.admin_users == ["alice"]
    assert sitefile.to_toml(site) == path.read_text()


def test_refuses_to_write_an_invalid_site(tmp_path):
    bad = dict(DRAFT, hosts=DRAFT["hosts"][1:])
    with pytest.raises(Exception):  # noqa: B017 - pydantic or ConfigError: either way nothing is written
        sitefile.write(tmp_path / "s.toml", bad)
    assert not (tmp_path / "s.toml").exists()
    assert "exactly one host" in sitefile.site_error(bad)


def test_field_errors_are_the_site_files():
    assert sitefile.field_error("site", "email", "nope") == "not a valid e-mail address"
    assert sitefile.field_error("hosts", "name", "Bad_Name") is not None
    assert sitefile.field_error("registry", "url", "reg:70000") == "port must be a number from 1 to 65535"
    assert sitefile.field_error("quotas", "default", "7G") is None
    assert "client_id" in sitefile.field_error("oauth", "client_id", "", {"provider": "github"})
    with pytest.raises(ConfigError):
        from hubwizard.core.config import parse_site

        parse_site(sitefile.to_toml(DRAFT).replace('"hub.example.org"', '"bad domain"'))


def test_questions_follow_answers():
    q = next(x for x in sitefile.QUESTIONS if x.key == "client_id")
    assert sitefile.asked(q, {"oauth": {}})  # github is suggested: never the open dummy login
    assert not sitefile.asked(q, {"oauth": {"provider": "dummy"}})
    assert sitefile.asked(q, {"oauth": {"provider": "github"}})


def test_the_forms_suggestion_is_saved_and_is_never_the_open_login(tmp_path):
    """The settings form shows GitHub for an untouched login: that is what is saved, and GitHub
    still needs its client id and an admin (nothing is saved open)."""
    draft = {k: v for k, v in DRAFT.items() if k != "oauth"}
    assert "client_id" in sitefile.site_error(draft)
    draft["oauth"] = {"client_id": "Iv1.x"}
    assert sitefile.site_error(draft) is None
    site = load_site(sitefile.write(tmp_path / "s.toml", draft))
    assert (site.oauth.provider, site.oauth.client_id) == ("github", "Iv1.x")
    assert "provider" not in draft["oauth"]  # the draft itself is left as the admin made it
