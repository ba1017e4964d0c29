"""The hub service updated in place (issue 16 item 4): the flags of `docker service update` that
turn the running spec's lines into the wanted ones, so a day-2 change never re-creates the service."""

from __future__ import annotations

from hubwizard.actions.hub_service import update_flags

BASE = ["constraint: node.role==manager", "endpoint-mode: dnsrr", "env: HUBWIZARD_NFS_VOLUMES=0",
        "image: reg:5000/hub@sha256:aaa", "mount: type=volume,source=jupyterhub-data,target=/srv/jupyterhub/data",
        "name: jupyterhub", "network: jupyterhub", "publish: mode=host,target=8000,published=8000",
        "secret: source=hub_api_token-111,target=hub_api_token,mode=0400"]


def test_the_same_spec_needs_no_flag() -> None:
    assert update_flags(BASE, BASE) == []


def test_a_new_image_is_one_image_flag() -> None:
    want = [x.replace("sha256:aaa", "sha256:bbb") for x in BASE]
    assert update_flags(BASE, want) == ["--image", "reg:5000/hub@sha256:bbb"]


def test_a_new_secret_value_swaps_the_secret_by_name() -> None:
    want = [x.replace("token-111", "token-222") for x in BASE]
    assert update_flags(BASE, want) == ["--secret-rm", "hub_api_token-111",
                                        "--secret-add", "source=hub_api_token-222,target=hub_api_token,mode=0400"]


def test_env_and_mounts_are_removed_by_key_and_target() -> None:
    want = [x for x in BASE if not x.startswith(("env:", "mount:"))]
    want += ["env: HUBWIZARD_NFS_VOLUMES=1", "mount: type=bind,source=/srv/nfs,target=/srv/nfs"]
    flags = update_flags(BASE, want)
    assert flags == ["--env-rm", "HUBWIZARD_NFS_VOLUMES", "--mount-rm", "/srv/jupyterhub/data",
                     "--env-add", "HUBWIZARD_NFS_VOLUMES=1", "--mount-add", "type=bind,source=/srv/nfs,target=/srv/nfs"]


def test_a_renamed_service_cannot_be_updated() -> None:
    assert update_flags(BASE, [x.replace("name: jupyterhub", "name: other") for x in BASE]) is None
