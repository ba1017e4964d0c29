"""Which registry an image belongs to: the site's registry login is sent to that one only (issue 12 item 11)."""

from __future__ import annotations

import pytest

from hubwizard.actions.hub_image import registry_of, same_registry


@pytest.mark.parametrize(("image", "registry"), [
    ("jupyterhub/jupyterhub:5", "docker.io"),
    ("jupyter/base-notebook:latest", "docker.io"),
    ("ubuntu", "docker.io"),
    ("docker.io/library/ubuntu:24.04", "docker.io"),
    ("index.docker.io/x/y", "docker.io"),
    ("10.0.0.10:5000/demo/hub:1", "10.0.0.10:5000"),
    ("Registry.Example.org/demo/hub@sha256:" + "a" * 64, "registry.example.org"),
    ("localhost:5000/hub", "localhost:5000"),
])
def test_registry_of(image, registry):
    assert registry_of(image) == registry


def test_same_registry_ignores_scheme_and_slash_but_not_port():
    assert same_registry("10.0.0.10:5000/demo/hub:1", "http://10.0.0.10:5000/")
    assert not same_registry("10.0.0.10:5001/demo/hub:1", "10.0.0.10:5000")
    assert not same_registry("jupyterhub/jupyterhub:5", "10.0.0.10:5000")  # the base image: no login sent
    assert same_registry("jupyterhub/jupyterhub:5", "docker.io")
    assert same_registry("jupyterhub/jupyterhub:5", "index.docker.io")
