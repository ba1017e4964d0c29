"""GitHub, Google, CILogon, Globus (and generic OIDC): the login section of the rendered
jupyterhub_config.py sets what oauthenticator's documentation asks for, and verify's redirect
check expects the authorize URL each oauthenticator really sends browsers to.

The authorize URLs below were read from oauthenticator 17.4.0 in the lab's hub image
(``A(client_id=..., client_secret=...).authorize_url``); JupyterHub itself loads each rendered
config at build time (tests/integration/test_consumers.py).
"""

from __future__ import annotations

import ast
import urllib.parse

import pytest

from hubwizard.actions import hub_web
from tests.unit.test_render import files_by_path, make_site

OAUTHENTICATOR_AUTHORIZE = {
    "github": ("GitHubOAuthenticator", "https://github.com/login/oauth/authorize"),
    "google": ("GoogleOAuthenticator", "https://accounts.google.com/o/oauth2/v2/auth"),
    "cilogon": ("CILogonOAuthenticator", "https://cilogon.org/authorize"),
    "globus": ("GlobusOAuthenticator", "https://auth.globus.org/v2/oauth2/authorize"),
}


def login_settings(provider: str) -> dict[str, ast.expr]:
    """``c.Class.attr = value`` lines of the rendered login section, as 'Class.attr' -> value."""
    site = make_site("swarm-mode", provider)
    (config,) = [f for k, f in files_by_path(site).items() if k.endswith("jupyterhub_config.py")]
    text = config.content
    section = text[text.index("# -- Login"):text.index("# -- Services")]
    out: dict[str, ast.expr] = {}
    for node in ast.parse(section).body:
        if isinstance(node, ast.ImportFrom):
            out[f"import {node.module}"] = ast.Constant(node.names[0].name)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = node.targets[0]
            if isinstance(target.value, ast.Attribute):
                out[f"{target.value.attr}.{target.attr}"] = node.value
    return out


@pytest.mark.parametrize("provider", sorted(OAUTHENTICATOR_AUTHORIZE))
def test_rendered_login_is_what_oauthenticator_documents(provider: str) -> None:
    """Docs (oauthenticator.readthedocs.io, 'Getting started'): authenticator_class, client_id,
    client_secret, oauth_callback_url; allowed_users/admin_users say who gets in (nobody else)."""
    cls, _ = OAUTHENTICATOR_AUTHORIZE[provider]
    got = login_settings(provider)
    assert ast.literal_eval(got[f"import oauthenticator.{provider}"]) == cls
    assert isinstance(got["JupyterHub.authenticator_class"], ast.Name) and got["JupyterHub.authenticator_class"].id == cls
    assert ast.literal_eval(got[f"{cls}.client_id"]) == "Iv1.0123456789abcdef"
    secret = got[f"{cls}.client_secret"]
    assert isinstance(secret, ast.Call) and ast.literal_eval(secret.args[0]) == "oauth_client_secret"
    callback = ast.unparse(got[f"{cls}.oauth_callback_url"])
    assert callback.endswith("/hub/oauth_callback'") or callback.endswith('/hub/oauth_callback"')
    assert "Authenticator.allowed_users" in got and "Authenticator.admin_users" in got
    assert f"{cls}.authorize_url" not in got  # each class knows its provider's URLs


def test_cilogon_names_its_identity_providers() -> None:
    """oauthenticator >= 15 refuses to start CILogon without ``idps`` and a username_claim."""
    idps = ast.literal_eval(login_settings("cilogon")["CILogonOAuthenticator.idps"])
    assert idps and all(v["username_derivation"]["username_claim"] for v in idps.values())


def test_generic_sets_the_endpoints_scope_and_claim() -> None:
    got = login_settings("generic")
    for key in ("authorize_url", "token_url", "userdata_url"):
        assert ast.literal_eval(got[f"GenericOAuthenticator.{key}"]).startswith("https://id.example.org/")
    assert "openid" in ast.literal_eval(got["GenericOAuthenticator.scope"])
    assert ast.literal_eval(got["GenericOAuthenticator.username_claim"]) == "preferred_username"


def _location(authorize: str, client_id: str = "Iv1.0123456789abcdef") -> str:
    """The Location header an oauthenticator sends for GET /hub/oauth_login."""
    query = urllib.parse.urlencode({"response_type": "code", "redirect_uri": "https://hub.example.org/hub/oauth_callback",
                                    "client_id": client_id, "state": "eyJzdGF0ZV9pZCI6ICJhIn0"})
    return f"{authorize}?{query}"


@pytest.mark.parametrize("provider", sorted(OAUTHENTICATOR_AUTHORIZE))
def test_verify_expects_the_authorize_url_oauthenticator_uses(provider: str) -> None:
    _, authorize = OAUTHENTICATOR_AUTHORIZE[provider]
    site = make_site("swarm-mode", provider)
    ok, message = hub_web.check_redirect(_location(authorize), site)
    assert ok, message
    assert f"login redirects to {authorize} with client_id Iv1.0123456789abcdef" in message
    others = [url for p, (_, url) in OAUTHENTICATOR_AUTHORIZE.items() if p != provider]
    for wrong in others:
        ok, message = hub_web.check_redirect(_location(wrong), site)
        assert not ok and f"not {authorize}" in message


def test_verify_expects_the_generic_providers_own_authorize_url() -> None:
    site = make_site("swarm-mode", "generic")
    assert hub_web.check_redirect(_location("https://id.example.org/auth"), site)[0]
    ok, message = hub_web.check_redirect(_location("https://id.example.org/other"), site)
    assert not ok and "not https://id.example.org/auth" in message
