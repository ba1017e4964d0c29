"""Issue 12 item 2, the parts that are pure logic: the exports squash every client (no client is
root on the share), and the NFS guard's unit drops containers' traffic to the NFS server on
2049 and 111 while leaving the hosts' own traffic alone. The attack itself is attempted in a
lab by tests/integration/test_nfs_isolation.py."""

from __future__ import annotations

import re

from hubwizard.actions import nfs_guard
from hubwizard.core.render import NB_GID, NB_UID, PATHS
from hubwizard.core.steps import load_steps
from tests.unit.test_render import files_by_path, make_site


def _body(content: str) -> str:
    return "\n".join(line for line in content.splitlines() if not line.lstrip().startswith("#"))


def test_kernel_exports_squash_root_and_every_client_to_jovyan():
    content = _body(files_by_path(make_site())[PATHS["exports"]].content)
    options = re.findall(r"\(([^)]*)\)", content)
    assert options
    for opts in options:
        opts = opts.split(",")
        assert "root_squash" in opts and "all_squash" in opts
        assert f"anonuid={NB_UID}" in opts and f"anongid={NB_GID}" in opts
        assert "no_root_squash" not in opts


def test_ganesha_export_squashes_every_client_to_jovyan():
    content = _body(files_by_path(make_site())[PATHS["ganesha_conf"]].content)
    assert re.search(r"^\s*Squash = All_Squash;$", content, re.M)
    assert re.search(rf"^\s*Anonymous_Uid = {NB_UID};$", content, re.M)
    assert re.search(rf"^\s*Anonymous_Gid = {NB_GID};$", content, re.M)
    assert "no_root_squash" not in content.lower()


def test_guard_drops_every_port_and_protocol_to_each_nfs_address():
    rules = nfs_guard.drop_rules(["10.0.0.10", "203.0.113.7"])
    for ip in ("10.0.0.10", "203.0.113.7"):
        for proto in ("tcp", "udp"):
            for port in (2049, 111):
                assert f"HUBWIZARD-NFS-FWD -d {ip} -p {proto} --dport {port} -j REJECT" in " ".join(rules)
    # containers on the NFS server itself reach it through INPUT, from Docker's bridges only
    for bridge in ("docker0", "docker_gwbridge", "br-+"):
        assert f"HUBWIZARD-NFS-IN -i {bridge} -p tcp --dport 2049 -j REJECT --reject-with tcp-reset" in rules
    # never a rule that would cut the other hosts off the NFS server (INPUT without a bridge)
    assert not [r for r in rules if r.startswith("HUBWIZARD-NFS-IN") and " -i " not in r]


def test_guard_unit_refills_its_chains_and_runs_again_when_docker_starts():
    text = nfs_guard.unit_text(["10.0.0.10"])
    execs = [line.removeprefix("ExecStart=") for line in text.splitlines() if line.startswith("ExecStart=")]
    flushes = [i for i, e in enumerate(execs) if " -F " in e]
    appends = [i for i, e in enumerate(execs) if " -A " in e]
    assert flushes and appends and max(flushes) < min(appends)  # refilled whole: no stale address
    assert len(appends) == len(nfs_guard.drop_rules(["10.0.0.10"]))
    assert any("-I DOCKER-USER -j HUBWIZARD-NFS-FWD" in e for e in execs)
    assert any("-I INPUT -j HUBWIZARD-NFS-IN" in e for e in execs)
    assert "PartOf=docker.service" in text and "WantedBy=docker.service" in text
    assert "After=docker.service" in text


def test_teardown_script_unhooks_and_deletes_both_chains():
    script = nfs_guard.UNDO_SCRIPT
    for chain in ("HUBWIZARD-NFS-FWD", "HUBWIZARD-NFS-IN"):
        assert f"-X {chain}" in script
    assert "-D DOCKER-USER -j HUBWIZARD-NFS-FWD" in script and "-D INPUT -j HUBWIZARD-NFS-IN" in script
    assert nfs_guard.UNIT_PATH in script


def test_guard_step_runs_on_every_host_after_storage_and_on_added_nodes():
    steps = {s.id: s for s in load_steps("swarm-mode")}
    guard = steps["nfs-guard"]
    assert guard.targets == "all" and guard.scale_out
    assert steps["storage"].order < guard.order < steps["storage-clients"].order
    assert [i.call for i in guard.verify] == ["nfs_guard_in_place"]


def test_the_storage_test_writes_go_to_the_jovyan_folder():
    steps = {s.id: s for s in load_steps("swarm-mode")}
    calls = {i.call: i.args for i in steps["storage-clients"].verify}
    assert calls["nfs_test_write"] == {"folder": ".hubwizard-test"}
    assert calls["nfs_kernel_mount"] == {"folder": ".hubwizard-test"}
    assert any(".hubwizard-test" in (i.run or "") and "install -d" in (i.run or "") for i in steps["storage"].apply)
