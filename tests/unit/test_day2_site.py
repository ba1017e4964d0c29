"""Day-2 site settings (issue 16 item 4): Swarm reservations beside the limits, a choice of user
images in the spawn form, and a hub whose restart leaves users' servers running. Pure: the
rendered jupyterhub_config.py is parsed, its values read back as Python literals."""

from __future__ import annotations

import ast
import contextlib
import subprocess
from pathlib import Path

import pytest

from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts, generated_files
from tests.unit.test_render import make_site

CONFIG = "/srv/hubwizard/hub/jupyterhub_config.py"


def config_of(site) -> str:
    return next(f.content for f in generated_files(site, Facts.offline(site)) if f.path == CONFIG)


def assigned(config: str) -> dict[str, object]:
    """`c.X.y = literal` lines of a rendered config, as {"X.y": value}."""
    out: dict[str, object] = {}
    for node in ast.parse(config).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = ast.unparse(node.targets[0])
            if target.startswith("c."):
                with contextlib.suppress(ValueError):  # an expression (a path, a call): not a site value
                    out[target[2:]] = ast.literal_eval(node.value)
    return out


def test_a_hub_restart_leaves_users_servers_running() -> None:
    assert assigned(config_of(make_site()))["JupyterHub.cleanup_servers"] is False


def test_the_site_files_user_list_is_the_whole_truth() -> None:
    # users the hub API added are let in; hub_users deletes from the hub everyone the site file no
    # longer names, so removed from allowed_users = refused (tests/unit/test_hub_users.py)
    assert assigned(config_of(make_site()))["Authenticator.allow_existing_users"] is True


def test_guarantees_become_the_spawners_reservations_beside_the_limits() -> None:
    site = make_site(extra="", **{"mem_limit = \"4G\"": 'mem_limit = "4G"\ncpu_guarantee = 0.5\nmem_guarantee = "1G"'})
    values = assigned(config_of(site))
    assert values["SwarmSpawner.cpu_limit"] == 2.0 and values["SwarmSpawner.mem_limit"] == "4G"
    assert values["SwarmSpawner.cpu_guarantee"] == 0.5 and values["SwarmSpawner.mem_guarantee"] == "1G"


def test_no_guarantee_means_no_reservation_line() -> None:
    config = config_of(make_site())
    assert "guarantee" not in config and "allowed_images" not in config


@pytest.mark.parametrize("line, complaint", [
    ("cpu_guarantee = 3.0", "cpu_guarantee = 3 is above cpu_limit = 2"),
    ('mem_guarantee = "5G"', "mem_guarantee = '5G' is above mem_limit = '4G'"),
    ('mem_guarantee = "4097M"', "mem_guarantee = '4097M' is above mem_limit = '4G'"),
])
def test_a_guarantee_above_its_limit_is_refused_naming_both(line: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_site(**{"mem_limit = \"4G\"": f'mem_limit = "4G"\n{line}'})
    assert complaint in str(err.value)


def test_a_guarantee_equal_to_the_limit_is_fine() -> None:
    site = make_site(**{"mem_limit = \"4G\"": 'mem_limit = "4G"\ncpu_guarantee = 2.0\nmem_guarantee = "4096M"'})
    assert site.hub.cpu_guarantee == 2.0


PROFILES = ('\n[images.profiles]\n"R (tidyverse)" = "jupyter/r-notebook:latest"\n'
            '"Data science" = "jupyter/datascience-notebook:latest"\n')


def test_profiles_are_the_spawn_forms_images_default_first() -> None:
    site = make_site(extra=PROFILES)
    choices = assigned(config_of(site))["SwarmSpawner.allowed_images"]
    assert choices == {"Default": "jupyter/base-notebook:latest", "R (tidyverse)": "jupyter/r-notebook:latest",
                       "Data science": "jupyter/datascience-notebook:latest"}
    assert list(choices)[0] == "Default"  # type: ignore[arg-type]
    # every one of them is pre-pulled on every host (step prepull reads this list)
    assert site.images.user_images == ["jupyter/base-notebook:latest", "jupyter/r-notebook:latest",
                                       "jupyter/datascience-notebook:latest"]


def test_a_profile_name_that_could_be_html_is_refused() -> None:
    # dockerspawner writes the names into the form's HTML as they are
    with pytest.raises(ConfigError, match="profile name"):
        make_site(extra='\n[images.profiles]\n"<b onmouseover=x>" = "jupyter/r-notebook:latest"\n')


def test_the_rendered_config_with_every_day2_setting_passes_pyflakes(tmp_path: Path) -> None:
    site = make_site(extra=PROFILES, **{"mem_limit = \"4G\"": 'mem_limit = "4G"\ncpu_guarantee = 1\nmem_guarantee = "2G"'})
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(config_of(site), encoding="utf-8")
    result = subprocess.run(["ruff", "check", "--isolated", "--select", "F,E9", str(path)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
