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


COMMENTED = '''\
# our workshop hub: ask Ana before changing the hosts
[site]
name = "ws"                   # names the journal
domain = "hub.example.org"
email = "a@example.org"

[ssh]
connect_timeout = 10          # the default, written on purpose

[[hosts]]
name = "hub"
address = "10.0.0.1"
role = "hub"
user = "root"                 # the default user, kept explicit

[[hosts]]
name = "node1"
address = "10.0.0.2"
role = "node"

[hub]
admin_users = ["alice"]

[oauth]
provider = "github"
client_id = "Iv1.abc"         # registered 2026-11
'''


def test_saving_keeps_comments_layout_and_explicit_values_and_backs_up(tmp_path):
    """init and the TUI's Ctrl+S edit an existing file: what the admin wrote stays, SITE.bak holds the old file."""
    from hubwizard.cli.init import _load

    path = tmp_path / "site.toml"
    path.write_text(COMMENTED)
    draft = _load(path)  # as init and the wizard read it
    draft["site"]["domain"] = "jupyter.example.org"
    draft["hosts"].append({"name": "node2", "address": "10.0.0.3", "role": "node", "port": 2222})
    sitefile.write(path, draft)

    text = path.read_text()
    assert (tmp_path / "site.toml.bak").read_text() == COMMENTED
    for kept in ("# our workshop hub: ask Ana before changing the hosts", 'name = "ws"                   # names the journal',
                 "connect_timeout = 10          # the default, written on purpose",
                 'user = "root"                 # the default user, kept explicit',
                 'client_id = "Iv1.abc"         # registered 2026-11'):
        assert kept in text
    assert 'domain = "jupyter.example.org"' in text and "hub.example.org" not in text
    site = load_site(path)
    assert [h.name for h in site.hosts] == ["hub", "node1", "node2"] and site.hosts[2].port == 2222


def test_saving_unchanged_answers_leaves_the_file_alone(tmp_path):
    from hubwizard.cli.init import _load

    path = tmp_path / "site.toml"
    path.write_text(COMMENTED)
    sitefile.write(path, _load(path))
    assert path.read_text() == COMMENTED and not (tmp_path / "site.toml.bak").exists()


def test_a_removed_host_and_a_value_back_to_default(tmp_path):
    from hubwizard.cli.init import _load

    path = tmp_path / "site.toml"
    path.write_text(COMMENTED)
    draft = _load(path)
    draft["hosts"] = draft["hosts"][:1]
    draft["oauth"]["client_id"] = "Iv1.new"
    sitefile.write(path, draft)
    text = path.read_text()
    assert "node1" not in text and 'client_id = "Iv1.new"         # registered 2026-11' in text
    assert "# our workshop hub" in text
