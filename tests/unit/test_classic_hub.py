"""The classic track's hub, the pure parts: the rendered hub config (servers published on a
node's internal address, never 0.0.0.0; placed by constraint; proxy behind nginx), the steps'
order, how the end-to-end check reads `docker -H :4000 ps -a`, and the lab's stand-in manager's
routing rules. The hub, the stand-in and a spawn run for real in tests/integration/test_classic_hub.py."""

from __future__ import annotations

import ast

from hubwizard.actions import classic, classic_hub
from hubwizard.actions import swarm_stand_in as stand_in
from hubwizard.core.steps import load_steps
from tests.unit.test_render import files_by_path, make_site

PS = "\n".join([  # captured shape of `docker ps -a` (columns two or more spaces apart)
    "CONTAINER ID   IMAGE           COMMAND                  CREATED          STATUS                   "
    "PORTS                       NAMES",
    '1a2b3c4d5e6f   reg/su:latest   "jupyterhub-singleu…"   12 seconds ago   Up 10 seconds            '
    "10.0.0.12:32768->8888/tcp   node2/jupyter-hubwizardcheck",
    '9f8e7d6c5b4a   busybox         "sh"                     2 hours ago      Exited (0) 2 hours ago   '
    "                            node1/jupyter-alice",
])


def _config(site) -> str:
    return files_by_path(site)["/srv/hubwizard/hub/jupyterhub_config.py"].content


def test_servers_are_published_on_a_nodes_internal_address_never_all_interfaces():
    """Issue 12, low: the classic spawner's host_ip is not 0.0.0.0."""
    text = _config(make_site("classic"))
    ast.parse(text)
    assert '"0.0.0.0"' not in text and "host_ip = \"0.0.0.0\"" not in text
    assert "spawner.host_ip = NODES[node]" in text
    nodes = next(line for line in text.splitlines() if line.startswith("NODES = "))
    assert ast.literal_eval(nodes.split("=", 1)[1].split("#")[0].strip()) == {"node1": "10.0.0.11", "node2": "10.0.0.12"}
    assert 'spawner.environment["constraint:node"] = "=" + node' in text  # env constraint:node==NODE


def test_the_hub_listens_behind_nginx_and_spawns_through_the_manager_with_tls():
    text = _config(make_site("classic"))
    assert 'c.JupyterHub.bind_url = "http://127.0.0.1:8000"' in text
    assert 'SWARM_MANAGER = f"tcp://{HUB_IP}:4000"' in text and "c.DockerSpawner.tls_config" in text
    assert 'c.DockerSpawner.volumes = {"/home/{username}": "/home/jovyan/work"}' in text
    assert "c.Spawner.pre_spawn_hook = prepare_home" in text


def test_classic_steps_run_the_hub_after_the_cluster_and_verify_last():
    ids = [s.id for s in load_steps("classic")]
    for before, after in (("classic-manager", "classic-hub-image"), ("classic-hub-image", "classic-prepull"),
                          ("classic-prepull", "classic-hub"), ("https", "classic-hub"), ("classic-hub", "classic-oauth"),
                          ("classic-oauth", "classic-culler"), ("classic-culler", "classic-e2e")):
        assert ids.index(before) < ids.index(after), (before, after)
    assert ids[-1] == "classic-verify"


def test_hub_container_mounts_the_client_cert_homes_and_secrets_read_only():
    args = classic_hub.run_args(make_site("classic"), "reg/hub@sha256:abc", homes_mounted=True)
    assert args[-1] == "reg/hub@sha256:abc" and "--network" in args and "host" in args
    mounts = [args[i + 1] for i, a in enumerate(args) if a == "--mount"]
    assert f"type=bind,source={classic.CLIENT_DIR},target={classic.CLIENT_DIR},readonly" in mounts
    assert f"type=bind,source={classic_hub.SECRETS_ON_HUB},target=/run/secrets,readonly" in mounts
    assert "type=bind,source=/home,target=/home" in mounts
    assert "HUBWIZARD_HOMES_MOUNTED=1" in args
    assert "HUBWIZARD_HOMES_MOUNTED=0" in classic_hub.run_args(make_site("classic"), "i", homes_mounted=False)


def test_the_e2e_check_reads_the_tutorials_ps_listing():
    assert classic_hub.manager_listing(PS, "jupyter-hubwizardcheck") == ("node2", "Up 10 seconds")
    assert classic_hub.manager_listing(PS, "jupyter-alice") == ("node1", "Exited (0) 2 hours ago")
    assert classic_hub.manager_listing(PS, "jupyter-bob") is None
    assert classic_hub.published_ip("8888/tcp -> 10.0.0.12:32768\n") == "10.0.0.12"
    assert classic_hub.published_ip("10.0.0.12:32768") == "10.0.0.12"
    assert classic_hub.published_ip("") == ""


def test_stand_in_places_by_constraint_else_spread_and_names_like_swarm():
    nodes = stand_in.parse_nodes("node1=10.0.0.11:2376, node2=10.0.0.12:2376")
    assert nodes == {"node1": "10.0.0.11:2376", "node2": "10.0.0.12:2376"}
    assert stand_in.constraint_node(["A=b", "constraint:node==node2"]) == "node2"
    assert stand_in.constraint_node(["constraint:node=node2"]) is None and stand_in.constraint_node(None) is None
    assert stand_in.spread({"node1": 2, "node2": 1}) == "node2"
    assert stand_in.spread({"node1": 1, "node2": 1}) == "node1"
    listed = stand_in.prefixed([{"Id": "x", "Names": ["/jupyter-a"]}], "node1")
    assert listed == [{"Id": "x", "Names": ["/node1/jupyter-a"]}]
    assert stand_in.split_ref("node1/jupyter-a", nodes) == ("node1", "jupyter-a")
    assert stand_in.split_ref("abc123", nodes) == (None, "abc123")
    status = stand_in.system_status(nodes, {"node1": True}, {"node1": 3})
    assert ["Nodes", "2"] in status and ["  └ Status", "Unhealthy"] in status


def test_stand_in_command_runs_hubwizards_program_with_the_manager_cert():
    site = make_site("classic", extra="\n[classic]\nlab_stand_ins = true\n")
    nodes = classic.stand_in_nodes(site, {"node1": "10.0.0.11", "node2": "10.0.0.12"})
    assert nodes == "node1=10.0.0.11:2376,node2=10.0.0.12:2376"
    cmd = classic.stand_in_command(site, "manager", "10.0.0.10", nodes)
    assert "-v /etc/docker/tls:/certs:ro" in cmd and f"{classic.STAND_IN_ON_HUB}:/stand-in.py:ro" in cmd
    assert "NODES=node1=10.0.0.11:2376,node2=10.0.0.12:2376" in cmd and "--network host" in cmd
    # a new program or node list gives a new spec label, so apply restarts the stand-in
    assert cmd != classic.stand_in_command(site, "manager", "10.0.0.10", "node1=10.0.0.11:2376")
