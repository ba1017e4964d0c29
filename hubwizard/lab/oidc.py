"""The lab's OpenID Connect provider: who exists there, what the hub is allowed to ask, and the
small program that runs oidc-provider-mock inside its container.

Why a registered client: oidc-provider-mock accepts any client id and secret unless clients must
register; the lab registers exactly one (the hub: its id, its secret, its callback URL), so a
wrong secret or callback fails in the lab as it would at a real provider. Why plain HTTP: the
hub's token exchange would need the lab CA inside the hub image; HTTP stays on the lab network.
"""

from __future__ import annotations

import json
from typing import Any

PORT = 9400
CLIENT_ID = "hubwizard-lab-hub"
CONF_FILE = "/etc/hubwizard-lab/oidc.json"  # client secret inside: 0600, never in the env

# Users the provider knows (the hub decides who is let in from [hub] in the site file).
ADMINS = ("teacher",)
STUDENTS = 2  # `lab up --students N` for a class (the morning-rush bench logs in 50)
OUTSIDER = "mallory"  # known to the provider, not allowed on the hub: the 403 case


def students(n: int = STUDENTS) -> tuple[str, ...]:
    """The lab's allowed users: student1..studentN."""
    return tuple(f"student{i}" for i in range(1, n + 1))


ALLOWED = students()
USERS = (*ADMINS, *ALLOWED, OUTSIDER)


def users(n: int = STUDENTS) -> tuple[str, ...]:
    """Everyone the provider knows for a lab of N students."""
    return (*ADMINS, *students(n), OUTSIDER)


def claims(user: str) -> dict[str, Any]:
    """OIDC claims of a lab user: the hub takes the name from preferred_username."""
    return {"sub": user, "preferred_username": user, "email": f"{user}@lab.test", "name": user.title()}


def base_url(address: str) -> str:
    return f"http://{address}:{PORT}"


def endpoints(address: str) -> dict[str, str]:
    """oidc-provider-mock's endpoints as GenericOAuthenticator names them."""
    base = base_url(address)
    return {
        "authorize_url": f"{base}/oauth2/authorize",
        "token_url": f"{base}/oauth2/token",
        "userdata_url": f"{base}/userinfo",
    }


def provider_config(client_secret: str, redirect_uri: str, n_students: int = STUDENTS) -> str:
    """The JSON the container's program reads: the one client and the users."""
    return json.dumps(
        {
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
            "redirect_uris": [redirect_uri],
            "users": [claims(u) for u in users(n_students)],
            "port": PORT,
        },
        indent=2,
    )


# Runs in the provider's container (/opt/oidc/bin/python): not imported by hubwizard.
SERVER = '''\
"""oidc-provider-mock with one registered client (the lab hub) and the lab's users."""
import json
import os
import sys
import time

import flask
import uvicorn
import oidc_provider_mock
from oidc_provider_mock._storage import Client, User

CONF = "/etc/hubwizard-lab/oidc.json"
while not os.path.exists(CONF):
    time.sleep(0.1)
with open(CONF) as fh:
    conf = json.load(fh)
users = [User(sub=u["sub"], claims={k: v for k, v in u.items() if k != "sub"}) for u in conf["users"]]
app = oidc_provider_mock.app(require_client_registration=True, user_claims=users)
app.debug = False
app.wsgi_app = app.wsgi_app.app  # no werkzeug debugger on the lab network
with app.test_request_context("/"):
    app.preprocess_request()
    flask.g.oidc_provider_mock_storage.store_client(Client(
        id=conf["client_id"],
        secret=conf["client_secret"],
        redirect_uris=conf["redirect_uris"],
        allowed_scopes=Client.SCOPES_SUPPORTED,
        token_endpoint_auth_method="client_secret_post",  # oauthenticator's default (basic_auth False)
    ))
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
print(f"oidc-provider-mock: client {conf['client_id']}, {len(users)} users, port {conf['port']}", file=sys.stderr)
uvicorn.run(app, interface="wsgi", host="0.0.0.0", port=int(conf["port"]), log_level="info")
'''
