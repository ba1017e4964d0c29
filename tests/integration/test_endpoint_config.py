"""The endpoint mode as a real JupyterHub reads it (no lab: the test venv of test_consumers): the
config rendered for hosts with IPVS gives users' servers a virtual IP, without it DNS round robin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubwizard.core.endpoint import Ipvs
from hubwizard.core.render import Facts, generated_files, hub_users_json
from tests.integration.test_consumers import hub_python, run  # noqa: F401 - hub_python is a fixture
from tests.unit.test_render import make_site

PROBE = r"""
import asyncio, json, sys
from jupyterhub import orm
from jupyterhub.app import JupyterHub

async def main():
    app = JupyterHub()
    await app.initialize(["-f", sys.argv[1]])
    spawner = app.users[orm.User.find(app.db, "alice")].spawner
    print(json.dumps({"class": type(spawner).__name__, "endpoint": spawner.extra_endpoint_spec}))

asyncio.run(main())
"""


@pytest.mark.parametrize("kernel, mode", [("loadable", "vip"), ("absent", "dnsrr")])
def test_jupyterhub_gives_users_servers_the_chosen_endpoint_mode(hub_python: str, tmp_path: Path,  # noqa: F811
                                                                 kernel: str, mode: str) -> None:
    site = make_site()
    facts = Facts.offline(site)
    facts.ipvs.update({h.name: Ipvs(kernel, "6.1.0-57-cloud-amd64") for h in site.active_hosts})
    (config,) = [f for f in generated_files(site, facts) if f.path == "/srv/hubwizard/hub/jupyterhub_config.py"]
    (tmp_path / "jupyterhub_config.py").write_text(config.content)
    (tmp_path / "probe.py").write_text(PROBE)
    for sub in ("secrets", "data", "nfs"):
        (tmp_path / sub).mkdir()
    (tmp_path / "secrets" / "oauth_client_secret").write_text("s\n")
    (tmp_path / "data" / "hubwizard-users.json").write_text(hub_users_json(site))
    env = {**os.environ, "HUBWIZARD_SECRETS_DIR": str(tmp_path / "secrets"), "HUBWIZARD_DATA_DIR": str(tmp_path / "data"),
           "HUBWIZARD_NFS_ROOT": str(tmp_path / "nfs")}
    result = run([hub_python, str(tmp_path / "probe.py"), str(tmp_path / "jupyterhub_config.py")], env=env,
                 cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"class": "SwarmSpawner", "endpoint": {"mode": mode}}
