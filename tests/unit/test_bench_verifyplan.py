"""The benchmark's generated Ansible playbook, inventory and ssh commands (bench/verifyplan.py).

Only what the files say is tested here: benchmarks are measured by bench/run.py, never asserted.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import verifyplan  # noqa: E402

from hubwizard.core.config import Site  # noqa: E402
from hubwizard.core.steps import parse_recipe  # noqa: E402


class _AnsibleLoader(yaml.SafeLoader):
    """PyYAML plus Ansible's !unsafe tag (a plain string Ansible never templates)."""


_AnsibleLoader.add_constructor("!unsafe", lambda loader, node: ("unsafe", loader.construct_scalar(node)))


def _site(tmp_path: Path) -> Site:
    return Site.model_validate({
        "site": {"name": "b", "domain": "hub.example.org", "email": "a@example.org"},
        "hosts": [
            {"name": "hub", "address": "10.0.0.2", "role": "hub", "key": str(tmp_path / "id"), "port": 2222},
            {"name": "node1", "address": "10.0.0.3", "role": "node", "user": "admin"},
        ],
        "ssh": {"known_hosts": str(tmp_path / "known_hosts")},
        "oauth": {"provider": "dummy", "i_understand_anyone_can_log_in": True},
    })


def _plan() -> verifyplan.VerifyPlan:
    go = "docker network inspect -f '{{.Driver}}' jupyterhub"
    return verifyplan.VerifyPlan(
        checks=[
            verifyplan.Check("docker", "hub", "docker installed", "command -v docker"),
            verifyplan.Check("docker", "node1", "docker installed", "command -v docker"),
            verifyplan.Check("storage", "hub", "export", "nfs-ls nfs://10.0.0.2/srv", sudo=False, timeout=30),
            verifyplan.Check("storage", "node1", "export", "nfs-ls nfs://10.0.0.3/srv", sudo=False, timeout=30),
            verifyplan.Check("network", "hub", "overlay", go),
        ],
        steps=["docker", "storage", "network"],
    )


def test_playbook_is_one_play_per_step_and_commands_are_never_templated() -> None:
    plays = yaml.load(verifyplan.playbook_yaml(_plan()), Loader=_AnsibleLoader)
    assert [p["name"] for p in plays] == ["verify docker", "verify storage", "verify network"]
    docker, storage, network = plays
    assert docker["hosts"] == "hub:node1" and docker["gather_facts"] is False
    assert len(docker["tasks"]) == 1 and "when" not in docker["tasks"][0]  # same command on both: one task
    assert docker["tasks"][0]["become"] is True
    assert len(storage["tasks"]) == 2  # the command differs per host: a task bound to each
    assert storage["tasks"][0]["when"] == 'inventory_hostname in ["hub"]'
    assert storage["tasks"][0]["become"] is False and storage["tasks"][0]["timeout"] == 30
    assert network["tasks"][0]["ansible.builtin.shell"] == ("unsafe", "docker network inspect -f '{{.Driver}}' jupyterhub")
    assert all(t["ignore_errors"] is True and t["changed_when"] is False for p in plays for t in p["tasks"])


def test_inventory_uses_the_site_key_port_user_and_strict_known_hosts(tmp_path: Path) -> None:
    inv = yaml.safe_load(verifyplan.inventory_yaml(_site(tmp_path), ["hub", "node1"]))
    hub, node = inv["all"]["hosts"]["hub"], inv["all"]["hosts"]["node1"]
    assert (hub["ansible_host"], hub["ansible_port"], hub["ansible_user"]) == ("10.0.0.2", 2222, "root")
    assert hub["ansible_ssh_private_key_file"] == str(tmp_path / "id")
    assert hub["ansible_ssh_common_args"] == (
        f"-o UserKnownHostsFile={tmp_path / 'known_hosts'} -o StrictHostKeyChecking=yes")
    assert node["ansible_user"] == "admin" and "ansible_ssh_private_key_file" not in node


def test_ansible_cfg_defaults_and_tuned() -> None:
    default = verifyplan.ansible_cfg(pipelining=False, forks=None)
    tuned = verifyplan.ansible_cfg(pipelining=True, forks=7)
    assert "forks" not in default and "pipelining" not in default
    assert "forks = 7" in tuned and "pipelining = True" in tuned


def test_ssh_argv_wraps_sudo_like_the_engine(tmp_path: Path) -> None:
    site = _site(tmp_path)
    root = verifyplan.ssh_argv(site, "hub", "systemctl is-active docker", sudo=True)
    assert root[-2:] == ["root@10.0.0.2", "systemctl is-active docker"]
    assert root[root.index("-p"):root.index("-p") + 2] == ["-p", "2222"]
    assert "StrictHostKeyChecking=yes" in root
    admin = verifyplan.ssh_argv(site, "node1", "test -d '/srv/a b'", sudo=True)
    assert admin[-1] == "sudo -n -- sh -c 'test -d '\"'\"'/srv/a b'\"'\"''"


def test_file_check_command_passes_only_for_the_same_content(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_bytes(b'{"log-driver": "json-file"}\n')
    same = verifyplan.file_check_command(target.read_bytes(), str(target))
    other = verifyplan.file_check_command(b"{}\n", str(target))
    assert hashlib.sha256(target.read_bytes()).hexdigest() in same
    assert subprocess.run(["sh", "-c", same]).returncode == 0
    assert subprocess.run(["sh", "-c", other]).returncode != 0
    assert subprocess.run(["sh", "-c", verifyplan.file_check_command(b"", str(tmp_path / "missing"))],
                          stderr=subprocess.DEVNULL).returncode != 0


def test_restricted_steps_keep_only_shell_checks() -> None:
    steps = parse_recipe(
        """
- id: a
  verify:
    - run: "true"
    - call: swarm_manager
    - file: daemon.json.j2
      path: /etc/docker/daemon.json
- id: b
  verify:
    - call: end_to_end
""", "test")
    kept = verifyplan.restricted_steps(steps)
    assert [s.id for s in kept] == ["a"]
    assert [(i.run, i.file) for i in kept[0].verify] == [("true", None), (None, "daemon.json.j2")]
