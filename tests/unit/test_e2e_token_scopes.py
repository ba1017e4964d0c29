"""The end-to-end check's token names its own test user (issue 12, Low): the hub config's
scopes and hub_e2e agree on that user's name, and nothing in them reaches every user's servers.
The attack itself: tests/integration/test_e2e_token_scope.py (a real JupyterHub 5)."""

from __future__ import annotations

import re

from hubwizard.actions.hub_e2e import E2E_USER
from hubwizard.core.render import Facts, generated_files
from tests.unit.test_hub_actions import site


def test_the_check_role_is_scoped_to_the_e2e_user():
    s = site()
    config = next(f.content for f in generated_files(s, Facts.offline(s)) if f.path.endswith("jupyterhub_config.py"))
    assert f'E2E_USER = "{E2E_USER}"' in config
    role = config.split('"name": "hubwizard-check",', 1)[1].split('"services"', 1)[0]
    scopes = re.findall(r'f?"([^"]+)"', role)
    assert scopes, role
    changing = [x for x in scopes if x.split("!")[0] in ("admin:users", "servers", "access:servers", "admin:servers",
                                                           "tokens", "users", "delete:users", "delete:servers")]
    assert changing and all(x.endswith("!user={E2E_USER}") for x in changing), scopes
    assert "admin:servers" not in role and "tokens" not in role
