"""The day-2 settings as a real JupyterHub reads them (no lab: the test venv of test_consumers):
reservations on the spawner, the spawn form's images, and servers left running on shutdown."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hubwizard.core.render import hub_users_json
from tests.integration.test_consumers import hub_python, rendered, run  # noqa: F401 - hub_python is a fixture
from tests.unit.test_day2_site import PROFILES
from tests.unit.test_render import make_site

PROBE = r"""
import asyncio, json, sys
from jupyterhub import orm
from jupyterhub.app import JupyterHub

async def main():
    app = JupyterHub()
    await app.initialize(["-f", sys.argv[1]])
    spawner = app.users[orm.User.find(app.db, "alice")].spawner
    print(json.dumps({"cleanup_servers": app.cleanup_servers, "existing": app.authenticator.allow_existing_users,
                      "cpu_guarantee": spawner.cpu_guarantee,
                      "mem_guarantee": spawner.mem_guarantee, "images": spawner.allowed_images,
                      "form": await spawner.get_options_form()}))

asyncio.run(main())
"""


def test_jupyterhub_reads_reservations_profiles_and_keeps_servers_on_shutdown(hub_python: str, tmp_path: Path) -> None:  # noqa: F811
    site = make_site(extra=PROFILES, **{'mem_limit = "4G"': 'mem_limit = "4G"\ncpu_guarantee = 0.5\nmem_guarantee = "1G"'})
    (tmp_path / "jupyterhub_config.py").write_text(rendered(site, "/srv/hubwizard/hub/jupyterhub_config.py"))
    (tmp_path / "probe.py").write_text(PROBE)
    for sub in ("secrets", "data", "nfs"):
        (tmp_path / sub).mkdir()
    (tmp_path / "secrets" / "oauth_client_secret").write_text("s\n")
    (tmp_path / "data" / "hubwizard-users.json").write_text(hub_users_json(site))  # what hub_users puts there
    env = {**os.environ, "HUBWIZARD_SECRETS_DIR": str(tmp_path / "secrets"), "HUBWIZARD_DATA_DIR": str(tmp_path / "data"),
           "HUBWIZARD_NFS_ROOT": str(tmp_path / "nfs")}
    result = run([hub_python, str(tmp_path / "probe.py"), str(tmp_path / "jupyterhub_config.py")], env=env,
                 cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "not recognized" not in result.stderr, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["cleanup_servers"] is False and found["existing"] is True  # hub_users removes the rest
    assert found["cpu_guarantee"] == 0.5 and found["mem_guarantee"] == 2**30
    assert list(found["images"]) == ["Default", "R (tidyverse)", "Data science"]
    assert found["images"]["Default"] == "jupyter/base-notebook:latest"
    assert 'name="image"' in found["form"] and "R (tidyverse)" in found["form"]
