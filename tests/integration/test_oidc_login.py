"""A real OpenID Connect login on the lab's hub: the authorization-code flow runs end to end
(hub -> oidc-provider-mock -> /hub/oauth_callback -> hub, the hub exchanging the code and reading
userinfo server-to-server with the client secret it got as a Docker secret), the user name comes
from the preferred_username claim, and [hub] allowed_users/admin_users decide who gets in.

Runs on the session's shared swarm lab (tests/swarm_lab.py), or on a lab you applied by hand:
HUBWIZARD_TEST_LAB_SITE=/path/site.toml pytest -m lab tests/integration/test_oidc_login.py
"""

from __future__ import annotations

import urllib.parse

import pytest

from hubwizard.actions import hub_web
from hubwizard.lab import oidc as lab_oidc
from tests.lab_web import LabHub, lab_hub, oidc_login, session

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest) -> LabHub:
    return lab_hub(request)


def test_the_lab_site_logs_in_through_its_openid_provider(hub: LabHub) -> None:
    oauth = hub.site.oauth
    assert oauth.provider == "generic" and oauth.client_id == lab_oidc.CLIENT_ID
    assert hub.site.hub.admin_users == list(lab_oidc.ADMINS)
    assert lab_oidc.OUTSIDER not in hub.site.hub.allowed_users + hub.site.hub.admin_users


def test_login_redirect_names_the_provider_client_and_callback(hub: LabHub) -> None:
    """What `verify` checks, on the real hub: /hub/oauth_login sends the browser to the provider."""
    s = session(hub)
    reply = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=60)
    assert reply.status_code == 302, reply.text[:300]
    location = reply.headers["location"]
    ok, message = hub_web.check_redirect(location, hub.site)
    assert ok, message
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["response_type"] == ["code"] and "state" in query
    assert set(query["scope"][0].split()) >= {"openid", "profile"}


def test_an_allowed_user_logs_in_and_lands_on_the_hub_home(hub: LabHub) -> None:
    s = session(hub)
    home = oidc_login(s, hub, "student1")
    assert home.status_code == 200, f"{home.status_code} at {home.url}: {home.text[:500]}"
    assert urllib.parse.urlsplit(home.url).path == "/hub/home", home.url
    assert "student1" in home.text
    # The hub names the user from the claim and knows them as a non-admin.
    me = s.get(f"{hub.url}/hub/api/user", headers={"Referer": f"{hub.url}/hub/home"}, timeout=30)
    if me.status_code == 200:  # the cookie-authenticated API call (XSRF rules vary by version)
        assert me.json()["name"] == "student1" and not me.json()["admin"]
    assert s.get(f"{hub.url}/hub/admin", timeout=30).status_code == 403


def test_an_admin_logs_in_and_reaches_the_admin_page(hub: LabHub) -> None:
    s = session(hub)
    home = oidc_login(s, hub, lab_oidc.ADMINS[0])
    assert home.status_code == 200, f"{home.status_code} at {home.url}: {home.text[:500]}"
    admin = s.get(f"{hub.url}/hub/admin", timeout=30)
    assert admin.status_code == 200 and urllib.parse.urlsplit(admin.url).path == "/hub/admin", admin.url


def test_a_user_not_allowed_gets_the_hubs_403_page(hub: LabHub) -> None:
    """The provider vouches for mallory; the hub still refuses: allowed_users is enforced."""
    s = session(hub)
    refused = oidc_login(s, hub, lab_oidc.OUTSIDER)
    assert refused.status_code == 403, f"{refused.status_code} at {refused.url}: {refused.text[:500]}"
    assert urllib.parse.urlsplit(refused.url).path == "/hub/oauth_callback"
    assert "403" in refused.text
    home = s.get(f"{hub.url}/hub/home", timeout=30)
    assert urllib.parse.urlsplit(home.url).path == "/hub/login", "mallory must not hold a hub session"


def test_a_wrong_client_secret_is_refused_by_the_provider(hub: LabHub) -> None:
    """The provider checks the hub's client secret: the one that reached the hub is the right one,
    and a guessed one gets no token (so the login above proves the Docker secret arrived)."""
    import requests

    token_url = hub.site.oauth.token_url or ""
    plain = requests.Session()
    plain.trust_env = False
    reply = plain.post(token_url, data={"grant_type": "authorization_code", "code": "x",
                                           "client_id": lab_oidc.CLIENT_ID, "client_secret": "guessed",
                                           "redirect_uri": f"{hub.url}/hub/oauth_callback"}, timeout=30)
    assert reply.status_code in (400, 401) and reply.json().get("error") == "invalid_client", reply.text
