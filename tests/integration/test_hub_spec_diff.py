"""plan --diff of the hub's Swarm service against a real swarm (a lab machine with Docker):
a service created from `service_args` reads back as exactly the lines apply would create, and a
changed setting is the one line that differs."""

from __future__ import annotations

import shlex

import pytest

from hubwizard.actions import hub_service
from hubwizard.actions.hub_spec import _current, lines_from_args
from hubwizard.core.redact import Redactor
from hubwizard.engine.calls import RunState, StepContext
from hubwizard.engine.diff import file_diff
from hubwizard.remote.connections import Connections
from hubwizard.session import open_site
from tests.integration.lab_fixture import running_lab

pytestmark = pytest.mark.lab


def test_a_real_service_reads_back_as_the_lines_it_was_created_from(tmp_path):
    with running_lab(tmp_path, with_docker=True, nodes=1) as up:
        session = open_site(up.site_path, prompt=None)
        site = session.site
        conns = Connections(site, session.secrets)
        try:
            hub = conns.get("hub")
            ip = up.record["machines"]["hub"]["ip"]
            for cmd in (f"docker swarm init --advertise-addr {ip}",
                        f"docker network create --driver overlay --attachable {shlex.quote(site.hub.network)}",
                        f"printf token | docker secret create {hub_service.secret_name('hub_api_token', 'token')} -"):
                res = hub.run(cmd, sudo=True, timeout=120)
                assert res.ok, res.output
            args = hub_service.service_args(site, site.images.hub, {"hub_api_token": "token"}, nfs_volumes=False)
            res = hub.run("docker service create " + " ".join(shlex.quote(a) for a in args), sudo=True, timeout=180)
            assert res.ok, res.output
            ctx = StepContext("hub-service", site.hub_host, hub, site, None, session.secrets, RunState(),
                              lambda e: None, conns, {}, "check")
            now = _current(ctx)
            assert now == "".join(f"{line}\n" for line in lines_from_args(args))

            moved = [a.replace("HUBWIZARD_NFS_VOLUMES=0", "HUBWIZARD_NFS_VOLUMES=1") for a in args]
            wanted = "".join(f"{line}\n" for line in lines_from_args(moved))
            d = file_diff("hub-service", "hub", "Swarm service jupyterhub (spec)", 0o644, now, wanted, Redactor())
            changed = [x for x in d.diff.splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")]
            assert changed == ["-env: HUBWIZARD_NFS_VOLUMES=0", "+env: HUBWIZARD_NFS_VOLUMES=1"]
        finally:
            conns.close()
