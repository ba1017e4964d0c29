"""The self-hosted registry's layout and who logs in with what (issue 12 item 10).

The attack itself (the nodes' account pushing, refused by the real nginx and registry) is in
tests/integration/test_registry_tls.py; here: the rendered configs and the choice of account.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hubwizard.actions import hub_image, registry
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts
from tests.unit.test_hub_actions import site

HOSTED = '\n[registry]\nurl = "10.0.0.10:5000"\nusername = "ci"\nself_hosted = true\n'


def hosted():
    base = site()
    reg = base.registry.model_copy(update={"url": "10.0.0.10:5000", "username": "ci", "self_hosted": True,
                                           "insecure": False})
    return base.model_copy(update={"registry": reg})


def _ctx(s, host: str):
    secrets = {"registry_password": "push-pw", registry.PULL_SECRET: "pull-pw"}
    return SimpleNamespace(site=s, host=SimpleNamespace(name=host),
                           secrets=SimpleNamespace(get=lambda name, required=True: secrets.get(name)))


def test_registry_on_loopback_nginx_on_the_internal_address_with_tls():
    s = hosted()
    facts = Facts.offline(s)
    yml, conf = registry.render_configs(s, facts, registry.layout(facts))
    assert f"addr: {registry.UPSTREAM}\n" in yml and "auth:" not in yml  # no accounts: nginx decides
    assert f"listen {facts.hub_ip}:5000 ssl;" in conf and "ssl_certificate " in conf
    assert "limit_except GET HEAD {" in conf
    block = conf.split("limit_except GET HEAD {", 1)[1].split("}", 1)[0]
    assert "pushers.htpasswd" in block and "readers.htpasswd" not in block
    assert f"server {registry.UPSTREAM};" in conf


def test_the_hub_pushes_every_other_host_only_pulls():
    s = hosted()
    assert registry.credentials(_ctx(s, "hub")) == ("ci", "push-pw")
    for node in ("node1", "node2"):
        assert registry.credentials(_ctx(s, node)) == ("hubwizard-pull", "pull-pw")
        auth = hub_image.registry_auth(_ctx(s, node), "10.0.0.10:5000/demo/hub:1")
        assert auth is not None and auth["username"] == "hubwizard-pull" and auth["password"] == "pull-pw"


def test_another_registry_keeps_one_account_everywhere():
    s = site()  # registry.example.org: its accounts are the admin's business
    assert registry.credentials(_ctx(s, "node1")) == ("ci", "push-pw")


def test_cert_names_and_trust_path():
    s = hosted()
    assert registry.cert_names(s, Facts(hub_ip="10.0.0.10")) == (["10.0.0.10"], [])
    named = s.model_copy(update={"registry": s.registry.model_copy(update={"url": "hub.internal:5000"})})
    assert registry.cert_names(named, Facts(hub_ip="10.0.0.10")) == (["10.0.0.10"], ["hub.internal"])
    assert registry.trust_path(s) == "/etc/docker/certs.d/10.0.0.10:5000/ca.crt"


@pytest.mark.parametrize(("extra", "words"), [
    ("insecure = true\n", "remove insecure"),
    ('pull_username = "ci"\n', "pull_username must differ"),
])
def test_self_hosted_refuses_plain_http_and_a_shared_account(extra, words):
    from hubwizard.core.config import parse_site
    from tests.unit.test_hub_actions import SITE

    text = SITE.split("\n[registry]")[0] + HOSTED + extra + "\n[images]" + SITE.split("\n[images]", 1)[1]
    with pytest.raises(ConfigError, match=words):
        parse_site(text)


def test_templates_alone_render_the_shipped_layout():
    """`hubwizard render` and the template tests render the assets with the context alone."""
    from hubwizard.core.render import template_context
    from hubwizard.core.templating import render_asset

    s = hosted()
    facts = Facts.offline(s)
    ctx = template_context(s, facts)
    alone = (render_asset("registry/config.yml.j2", ctx), render_asset("registry/nginx.conf.j2", ctx))
    assert alone == registry.render_configs(s, facts, registry.layout(facts))
