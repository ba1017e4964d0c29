"""plan --diff of the hub service: its `docker service create` arguments and a running
service's Spec become the same lines, so only what changed differs."""

from __future__ import annotations

from hubwizard.actions.hub_spec import lines_from_args, lines_from_spec
from hubwizard.core.redact import Redactor
from hubwizard.engine.diff import file_diff

ARGS = ["--name", "jupyterhub", "--detach", "--with-registry-auth", "--constraint", "node.role==manager",
        "--endpoint-mode", "dnsrr", "--network", "jupyterhub-net",
        "--publish", "mode=host,target=8000,published=8000",
        "--mount", "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--mount", "type=volume,source=jupyterhub-data,target=/srv/jupyterhub/data",
        "--env", "HUBWIZARD_NFS_ROOT=/srv/home", "--secret", "source=hub_api_token-0123456789,target=hub_api_token,mode=0400",
        "reg:5000/lab/hub@sha256:aaa"]

SPEC = {  # as `docker service inspect --format '{{json .Spec}}'` gives it
    "Name": "jupyterhub", "Labels": {"org.hubwizard.spec": "abc"},
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "reg:5000/lab/hub@sha256:aaa", "Env": ["HUBWIZARD_NFS_ROOT=/srv/home"],
            "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock"},
                       {"Type": "volume", "Source": "jupyterhub-data", "Target": "/srv/jupyterhub/data"}],
            "Secrets": [{"File": {"Name": "hub_api_token", "UID": "0", "GID": "0", "Mode": 256},
                         "SecretID": "x1", "SecretName": "hub_api_token-0123456789"}]},
        "Placement": {"Constraints": ["node.role==manager"]},
        "Networks": [{"Target": "n0tw0rk1d"}]},
    "EndpointSpec": {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 8000,
                                                 "PublishMode": "host"}]},
}


def test_the_args_and_the_running_spec_give_the_same_lines():
    assert lines_from_spec(SPEC, {"n0tw0rk1d": "jupyterhub-net"}) == lines_from_args(ARGS)
    assert "image: reg:5000/lab/hub@sha256:aaa" in lines_from_args(ARGS)


def test_a_new_image_is_the_one_line_that_changes():
    now = "".join(f"{x}\n" for x in lines_from_spec(SPEC, {"n0tw0rk1d": "jupyterhub-net"}))
    wanted = "".join(f"{x}\n" for x in lines_from_args([*ARGS[:-1], "reg:5000/lab/hub@sha256:bbb"]))
    d = file_diff("hub-service", "hub", "Swarm service jupyterhub (spec)", 0o644, now, wanted, Redactor())
    changed = [line for line in d.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-image: reg:5000/lab/hub@sha256:aaa", "+image: reg:5000/lab/hub@sha256:bbb"]
