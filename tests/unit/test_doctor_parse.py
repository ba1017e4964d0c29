"""The doctor's parsers on real captured outputs (tests/data/doctor_*.txt, sources in each
file's header), and the classic track's pure logic: what the lab cannot produce itself."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hubwizard.actions import classic
from hubwizard.core.config import parse_site
from hubwizard.doctor import checks
from hubwizard.doctor.model import Diagnosis, exit_code, format_diagnosis
from tests.unit.sitetext import LAB_LOGIN, site_text

DATA = Path(__file__).resolve().parent.parent / "data"


def captured(name: str) -> str:
    """The output part of a captured file (after the source note and its '---' line)."""
    text = (DATA / name).read_text(encoding="utf-8")
    note, sep, body = text.partition("\n---\n")
    assert sep and note.startswith("# Source:"), f"{name} needs a '# Source:' note then '---'"
    return body


# ---------------------------------------------------------------- classic Swarm


def test_no_elected_primary_is_recognised():
    info = classic.parse_classic_info(captured("doctor_classic_no_primary.txt"))
    assert info["no_primary"] is True
    assert info["role"] == "replica" and info["node_count"] == 0 and info["nodes"] == []


def test_pending_nodes_are_reported_with_their_error():
    info = classic.parse_classic_info(captured("doctor_classic_info_pending.txt"))
    assert info["no_primary"] is False and info["role"] == "primary" and info["node_count"] == 2
    assert [n["addr"] for n in info["nodes"]] == ["xxxxx:2375", "yyyyy:2375"]
    assert all(n["status"] == "Pending" for n in info["nodes"])
    problems = classic.node_problems(info, {"node1": "xxxxx", "node2": "10.0.0.12"})
    assert problems[0] == "node1 (xxxxx:2375) is Pending: Cannot connect to the docker engine endpoint"
    assert problems[1] == "node2 (10.0.0.12) is missing from the cluster"


def test_plugins_block_after_the_nodes_is_not_a_node():
    info = classic.parse_classic_info(captured("doctor_classic_info_pending.txt"))
    assert "Volume" not in [n["name"] for n in info["nodes"]]


def test_healthy_node_has_no_problem():
    info = classic.parse_classic_info(captured("doctor_classic_info_healthy.txt"))
    assert info["nodes"][0]["status"] == "Healthy" and info["nodes"][0]["error"] == "(none)"
    assert classic.node_problems(info, {"ubuntu": "10.1.0.108"}) == []


# ---------------------------------------------------------------- swarm mode


def test_node_ls_down_workers():
    text = captured("doctor_node_ls_down.txt")
    rows = checks.parse_table(text)
    assert [r["STATUS"] for r in rows] == ["Ready", "Down", "Down"]
    assert rows[0]["MANAGER STATUS"] == "Leader" and rows[1]["MANAGER STATUS"] == ""
    problems = checks.swarm_node_problems(text, {"n1": "node-1", "n2": "node-2", "n9": "node-9"})
    assert "(leader)" not in problems and "n1" not in problems
    assert problems["n2"] == "node-2 is Down (availability Active)"
    assert "missing from the cluster" in problems["n9"]


def test_node_ls_two_of_three_managers_unreachable_is_lost_quorum():
    problems = checks.swarm_node_problems(captured("doctor_node_ls_unreachable.txt"), {"sv4": "SV4"})
    assert problems["(leader)"].startswith("2 of 3 managers unreachable (SV2, SV4): quorum lost")
    assert problems["sv4"].startswith("SV4 is Down")


def test_node_ls_without_leader():
    problems = checks.swarm_node_problems(captured("doctor_node_ls_no_leader.txt"), {"n1": "node-1"})
    assert "quorum is lost" in problems["(leader)"] and set(problems) == {"(leader)"}


def test_no_such_image_tasks():
    rows = checks.no_such_image_tasks(captured("doctor_service_ps_no_such_image.txt"))
    assert len(rows) == 4
    assert {(r["NODE"], r["IMAGE"]) for r in rows} == {("cloud-01", "myapp"), ("cloud-02", "myapp")}
    assert rows[0]["ERROR"] == '"No such image: myapp:latest"'
    assert rows[1]["NAME"] == "\\_ myapp-v1.1"


# ---------------------------------------------------------------- hosts


def test_df_full_tmpfs():
    rows = checks.parse_df(captured("doctor_df_full.txt"))
    assert ("tmpfs", 96, "/srv/hwdisk") in rows
    assert [m for _, pct, m in rows if pct >= checks.DISK_FULL_PERCENT] == ["/srv/hwdisk"]


def test_openssl_enddate():
    end = checks.parse_enddate("notAfter=Nov 27 01:36:34 2026 GMT\n")
    assert end == dt.datetime(2026, 11, 27, 1, 36, 34, tzinfo=dt.UTC)
    assert checks.parse_enddate("notAfter=Jan  5 00:00:00 2030 GMT").day == 5
    assert checks.parse_enddate("Could not open file") is None


def test_clock_skew_flags_only_the_outlier():
    assert checks.skew_outliers({"hub": 0.01, "node1": -0.2, "node2": 7.5}) == pytest.approx({"node2": 7.49})
    assert checks.skew_outliers({"hub": 0.0, "node1": 1.5}) == {}
    assert checks.skew_outliers({"hub": 100.0}) == {}


def test_uid_mismatches():
    tables = {
        "hub": classic.parse_passwd("alice:x:1001:1001::/home/alice:/bin/bash\nbob:x:1002:1002::/home/bob:/bin/sh\n"),
        "node1": classic.parse_passwd("alice:x:1001:1001::/home/alice:/bin/bash\nbob:x:2002:1002::/home/bob:/bin/sh"),
        "node2": classic.parse_passwd("alice:x:1001:1001::/home/alice:/bin/bash\n"),
    }
    problems = classic.uid_mismatches(["alice", "bob", "carol"], tables, "hub")
    assert problems == [
        "bob: uid:gid 2002:1002 on node1, 1002:1002 on hub",
        "bob: missing on node2 (uid 1002 on hub)",
        "carol: no such user on hub",
    ]


# ---------------------------------------------------------------- report and exit codes


def test_format_shows_fix_and_exact_commands():
    d = Diagnosis("consul", "hub", False, "Consul is broken", "exited", "recreate it",
                  ("docker rm -f consul", "docker restart swarm-manager"))
    text = format_diagnosis(d)
    assert text.startswith("[FAIL] consul") and "fix: recreate it" in text and "$ docker restart swarm-manager" in text
    assert format_diagnosis(Diagnosis("nfs-write", "n1", False, "cannot check", skipped=True)).startswith("[skip]")


def test_exit_codes():
    ok = Diagnosis("disk-space", "hub", True, "fine")
    bad = Diagnosis("disk-space", "hub", False, "full")
    skipped = Diagnosis("nfs-write", "n1", False, "cannot check", skipped=True)
    down = Diagnosis("ssh", "n1", False, "cannot reach")
    assert exit_code([ok, skipped]) == 0
    assert exit_code([ok, bad]) == 1
    assert exit_code([bad, down]) == 3


def test_every_check_has_a_fix_or_says_why_not():
    names = [c.name for c in checks.CHECKS]
    assert len(names) == len(set(names))
    for wanted in ("consul", "manager", "cluster-nodes", "swarm-nodes", "docker-engine", "no-such-image",
                   "hub-network", "nfs-write", "quota", "cert-expiry", "disk-space", "clock-skew", "engine-ids"):
        assert wanted in names


# ---------------------------------------------------------------- recipes of the classic track

SITE = site_text("old", track="classic") + LAB_LOGIN


def _rendered(site_text: str) -> dict[str, list[str]]:
    from hubwizard.core.journal import Journal
    from hubwizard.core.render import Facts
    from hubwizard.core.secrets import Secrets
    from hubwizard.core.steps import load_steps
    from hubwizard.engine.runner import Engine

    site = parse_site(site_text)
    eng = Engine(site, load_steps("classic"), None, Secrets(), Journal(Path("/nonexistent/j")), lambda e: None,
                 facts=Facts.offline(site))
    out = {}
    for step in eng.steps:
        for host in eng.hosts_for(step):
            out[f"{step.id}@{host.name}"] = [t for _, t in eng.rendered(step, eng.context(host))]
    return out


def test_classic_commands_are_the_tutorials_with_tls():
    cmds = _rendered(SITE)
    manager = " ".join(cmds["classic-manager@hub"])
    assert "docker pull swarm:1.2.9" in manager
    assert "--tlsverify --tlscacert=/certs/ca.pem" in manager
    assert "--replication --advertise 10.0.0.10:4000 consul://10.0.0.10:8500" in manager
    assert "--network host" in manager and "manage -H tcp://10.0.0.10:4000" in manager  # Consul guard: hosts only
    join = " ".join(cmds["classic-join@node1"])
    assert "join --advertise=10.0.0.11:2376 consul://10.0.0.10:8500" in join
    consul = " ".join(cmds["classic-consul@hub"])
    assert "-p 10.0.0.10:8500:8500 -h consul progrium/consul -server -bootstrap" in consul


def test_plain_tcp_only_when_forced_and_on_2375():
    cmds = _rendered(SITE + "\n[classic]\ndocker_tls = false\nallow_plain_tcp = true\n")
    assert "join --advertise=10.0.0.11:2375 " in " ".join(cmds["classic-join@node1"])
    assert "--tlsverify" not in " ".join(cmds["classic-manager@hub"])


def test_lab_stand_ins_replace_the_image_pulls():
    cmds = _rendered(SITE + "\n[classic]\nlab_stand_ins = true\n")
    assert cmds["classic-consul@hub"] == ['classic_stand_in({"role": "consul"})']
    assert not any("docker pull" in c for c in cmds["classic-manager@hub"])


def test_fix_without_a_terminal_needs_yes(tmp_path, capsys):
    """`doctor --fix` asks before each fix: with no TTY and no --yes it refuses (exit 2), before
    any host is contacted (the site's host does not exist)."""
    from hubwizard.cli.main import main

    site = tmp_path / "s.toml"
    site.write_text(SITE.replace("10.0.0.10", "192.0.2.1"))
    assert main(["doctor", "-c", str(site), "--fix"]) == 2
    assert "--yes" in capsys.readouterr().err


def test_plain_tcp_is_warned_loudly(tmp_path):
    """docker_tls = false + allow_plain_tcp: the TLS call says WARNING (shown as "cannot run
    here" in verify, never as a pass); without allow_plain_tcp it is an error."""
    from hubwizard.engine.calls import RunState, StepContext

    site = parse_site(SITE + "\n[classic]\ndocker_tls = false\nallow_plain_tcp = true\n")
    ctx = StepContext("classic-docker-tls", site.hub_host, None, site, None, None, RunState(), lambda e: None)
    res = classic.classic_tls_certs(ctx, check=True)
    assert not res.ok and res.skipped and res.message.startswith("WARNING: Docker listens on plain TCP 2375")
    site = parse_site(SITE + "\n[classic]\ndocker_tls = false\n")
    ctx = StepContext("classic-docker-tls", site.hub_host, None, site, None, None, RunState(), lambda e: None)
    res = classic.classic_tls_certs(ctx)
    assert not res.ok and not res.skipped and "needs Docker on TCP" in res.message


# ---------------------------------------------------------------- structure


def test_doctor_modules_import_only_downwards():
    """runner (model) > checks > fixes > context: no module reaches one that imports it back,
    not even lazily (grimp sees imports inside functions too)."""
    import grimp

    graph = grimp.build_graph("hubwizard", cache_dir=None)
    order = ["model", "checks", "fixes", "context"]
    for i, low in enumerate(order):
        for high in order[:i]:
            assert not graph.chain_exists(importer=f"hubwizard.doctor.{low}", imported=f"hubwizard.doctor.{high}")


def test_fixes_never_put_a_join_token_on_a_command_line():
    """A missing node rejoins through the swarm-join step's Docker API call; the displayed
    command keeps a placeholder where the token goes."""
    import inspect

    source = inspect.getsource(checks)
    assert "swarm join --token {" not in source and "join-token" not in source
    assert '"swarm-join"' in inspect.getsource(checks._swarm_fix)
