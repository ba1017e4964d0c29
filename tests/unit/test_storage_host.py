"""The dedicated NFS host's folder helper: its scripts run for real (bash, in a temp folder),
its key line and pinned host keys, and the hub's rendered ssh command agreeing with them."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from hubwizard.actions import storage_host as sh
from hubwizard.core.config import parse_site
from hubwizard.core.render import Facts, generated_files

DATA = Path(__file__).resolve().parents[1] / "data"
NFS_HOST = """
[[hosts]]
name = "store"
address = "10.0.0.20"
role = "nfs"
port = 2222
"""


def site(quotas: bool = True, server: bool = True):
    text = (DATA / "render-site.toml").read_text(encoding="utf-8")
    if not quotas:
        text = text.replace("[quotas]\nenabled = true", "[quotas]\nenabled = false")
    text = text.replace("[docker]", NFS_HOST + "\n[docker]" if server else "[docker]", 1)
    return parse_site(text)


def helper(tmp_path: Path, quotas: bool = False, set_quota: str = "exit 0") -> Path:
    """The root helper, with its storage root moved into tmp_path (and a stand-in set_quota)."""
    root = tmp_path / "nfs"
    root.mkdir(exist_ok=True)
    text = sh.helper_script(site(quotas=quotas), os.getuid(), os.getgid())
    text = text.replace("ROOT=/var/nfs", f"ROOT={root}")
    stub = tmp_path / "set-quota"
    stub.write_text(f"#!/bin/sh\n{set_quota}\n")
    stub.chmod(0o755)
    text = text.replace(sh.SET_QUOTA, str(stub))
    path = tmp_path / "helper"
    path.write_text(text)
    path.chmod(0o755)
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=30)


def test_remote_only_when_the_nfs_host_is_another_host():
    assert sh.remote(site())
    assert not sh.remote(site(server=False))


def test_helper_makes_the_folder_once_and_is_safe_to_rerun(tmp_path):
    h = helper(tmp_path)
    first = run(str(h), "alice")
    assert first.returncode == 0, first.stderr
    assert "made" in first.stdout
    folder = tmp_path / "nfs" / "alice"
    assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o755"
    again = run(str(h), "alice")
    assert again.returncode == 0 and "exists" in again.stdout
    assert run(str(h), "--check").returncode == 0


@pytest.mark.parametrize("name", ["../etc", "a/b", "Alice", "-rf", "", "a b", "x\ny", ".hidden", "a" * 200])
def test_helper_refuses_names_that_are_not_folder_names(tmp_path, name):
    h = helper(tmp_path)
    res = run(str(h), name)
    assert res.returncode == 2, (name, res.stdout, res.stderr)
    assert sorted(p.name for p in (tmp_path / "nfs").iterdir()) == []


def test_helper_refuses_a_symlink(tmp_path):
    h = helper(tmp_path)
    (tmp_path / "nfs" / "bob").symlink_to(tmp_path)
    res = run(str(h), "bob")
    assert res.returncode == 1 and "symbolic link" in res.stderr


def test_helper_sets_the_quota_and_says_when_it_could_not(tmp_path):
    ok = run(str(helper(tmp_path, quotas=True, set_quota="echo quota set for $1")), "carol")
    assert ok.returncode == 0 and "quota set for" in ok.stdout
    bad = run(str(helper(tmp_path, quotas=True, set_quota="echo not XFS >&2; exit 3")), "dave")
    assert bad.returncode == sh.EXIT_QUOTA and "quota NOT applied" in bad.stderr and "not XFS" in bad.stderr
    assert (tmp_path / "nfs" / "dave").is_dir()


def test_forced_command_passes_one_word_and_refuses_the_rest(tmp_path):
    # the forced command with sudo replaced by a recorder: what reaches the root helper
    log = tmp_path / "argv"
    text = sh.FORCED_SCRIPT.replace(f"sudo -n {sh.HELPER}", f"{tmp_path}/record")
    (tmp_path / "record").write_text(f'#!/bin/sh\nprintf "%s|" "$@" > {log}\n')
    (tmp_path / "record").chmod(0o755)
    forced = tmp_path / "forced"
    forced.write_text(text)
    forced.chmod(0o755)

    def call(word: str) -> subprocess.CompletedProcess:
        log.unlink(missing_ok=True)
        return run(str(forced), env={"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": word})

    assert call("alice").returncode == 0 and log.read_text() == "alice|"
    assert call("check").returncode == 0 and log.read_text() == "--check|"
    for hostile in ["alice; id", "alice bob", "$(id)", "alice\nid", "", "../x", "--check"]:
        res = call(hostile)
        assert res.returncode == 2 and not log.exists(), hostile


def test_authorized_key_allows_one_command_from_the_hub_only():
    line = sh.authorized_key("ssh-ed25519 AAAAC3Nza hubwizard-storage-host\n", "10.0.0.10")
    assert line == (f'restrict,from="10.0.0.10",command="{sh.FORCED}" ssh-ed25519 AAAAC3Nza hubwizard-storage-host\n')


def test_known_hosts_pins_every_host_key_for_the_address_and_port():
    keys = "ssh-ed25519 AAAA1 root@store\nssh-rsa BBBB2 root@store\n\n"
    assert sh.known_hosts_text(keys, "10.0.0.20", 22) == "10.0.0.20 ssh-ed25519 AAAA1\n10.0.0.20 ssh-rsa BBBB2\n"
    assert sh.known_hosts_text(keys, "10.0.0.20", 2222).startswith("[10.0.0.20]:2222 ssh-ed25519 AAAA1\n")


def _hub_config(s) -> str:
    facts = Facts.offline(s)
    return next(f.content for f in generated_files(s, facts) if f.path.endswith("jupyterhub_config.py"))


def test_the_hub_runs_the_same_ssh_command_the_verify_step_runs():
    s = site()
    config = _hub_config(s)
    tree = ast.parse(config)
    assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    nfs_ip = ast.literal_eval(assigned["NFS_IP"])
    rendered = [ast.literal_eval(e) if not isinstance(e, ast.JoinedStr) else f"{sh.HELPER_USER}@{nfs_ip}"
                for e in assigned["FOLDER_HELPER_SSH"].elts]
    assert rendered == sh.ssh_command(s, nfs_ip, "check")[:-1]
    assert "-p" in rendered and rendered[rendered.index("-p") + 1] == "2222"
    assert "make_folder_on_nfs_host(" in config and "folder.mkdir" not in config
    assert "SET_QUOTA" not in config  # the quota is set on the NFS host, by its helper


def test_storage_on_the_hub_keeps_the_local_folder_code():
    config = _hub_config(site(server=False))
    assert "folder.mkdir" in config and "FOLDER_HELPER_SSH" not in config


def test_lab_nfs_host_site_names_the_nfs_machine_as_storage_server(tmp_path):
    from hubwizard.lab.site import render_site
    from hubwizard.lab.spec import LabSpec

    spec = LabSpec(name="t1", nodes=1, nfs_host=True)
    assert spec.hosts()[-1] == ("nfs", "nfs")
    record = {
        "name": "t1", "subnet": "172.30.0.0/24", "key": str(tmp_path / "id"), "known_hosts": str(tmp_path / "kh"),
        "pebble_cert": str(tmp_path / "pebble.pem"), "site_path": str(tmp_path / "t1.toml"),
        "registry": {"url": "172.30.0.9:5000"}, "acme": {"ip": "172.30.0.8"}, "oidc": None,
        "spec": {"user": "root", "ssh_port": 22, "jump": False, "sudo_password": False, "nfs_host": True},
        "machines": {h: {"role": r, "ip": f"172.30.0.{i + 2}"} for i, (h, r) in enumerate(spec.hosts())},
    }
    s = parse_site(render_site(record))
    assert s.nfs_host.name == "nfs" and s.nfs_host.role == "nfs" and sh.remote(s)
    assert [h.name for h in s.nodes] == ["node1"]
