"""The classic track's high availability and clone recipe (issue 15 item 1, seed 000), the pure
parts: [classic] consul_servers and replica_manager validated with a clear message; where the
servers and managers go; the discovery URL; the stand-in managers' election; how verify reads
the managers' and Consul servers' answers; how add-node recognises a clone and what it runs.
The lab runs all of it in tests/integration/test_classic_ha.py."""

from __future__ import annotations

import json

import pytest

from hubwizard.actions import classic, classic_clone, classic_ha
from hubwizard.actions import classic_guard as guard
from hubwizard.actions import swarm_stand_in as stand_in
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts, template_context
from hubwizard.core.steps import load_steps
from tests.unit.test_render import make_site

HA = '\n[classic]\nconsul_servers = {n}\nreplica_manager = "{replica}"\n'


def _ha(n: int = 2, replica: str = "node2", stand_ins: bool = False):
    return make_site("classic", extra=HA.format(n=n, replica=replica) + ("lab_stand_ins = true\n" if stand_ins else ""))


# ----------------------------------------------------------------------- the site file


@pytest.mark.parametrize("extra, says", [
    ("\n[classic]\nconsul_servers = 4\n", "must be 1, 2 or 3 Consul servers"),
    ("\n[classic]\nconsul_servers = 0\n", "must be 1, 2 or 3 Consul servers"),
    ('\n[classic]\nreplica_manager = "hub"\n', "classic.replica_manager = 'hub' is not an active node"),
    ('\n[classic]\nreplica_manager = "node9"\n', "(nodes: node1, node2)"),
])
def test_bad_ha_settings_are_refused_with_the_reason(extra, says):
    with pytest.raises(ConfigError) as err:
        make_site("classic", extra=extra)
    assert says in str(err.value)


def test_more_consul_servers_than_hosts_is_refused():
    with pytest.raises(ConfigError) as err:
        make_site("classic", extra="\n[classic]\nconsul_servers = 3\n", **{'name = "node2"': 'name = "node2"\nspare = true'})
    assert "the hub and 1 node(s) can hold at most 2" in str(err.value)


def test_consul_servers_go_to_the_hub_then_the_replicas_node_then_the_others():
    assert [h.name for h in _ha(2, "node2").consul_hosts] == ["hub", "node2"]
    assert [h.name for h in _ha(3, "node2").consul_hosts] == ["hub", "node2", "node1"]
    assert [h.name for h in make_site("classic").consul_hosts] == ["hub"]
    assert [h.name for h in _ha(2, "node2").manager_hosts] == ["hub", "node2"]
    assert [h.name for h in make_site("classic").manager_hosts] == ["hub"]


def test_managers_and_agents_are_given_every_consul_server():
    site = _ha(2, "node1")
    facts = Facts.offline(site)
    want = f"consul://{facts.ips['hub']}:8500,{facts.ips['node1']}:8500"
    assert template_context(site, facts)["consul_url"] == want
    one = make_site("classic")  # the tutorial's single server: the URL (and so the steps' digests) as before
    assert template_context(one, Facts.offline(one))["consul_url"] == f"consul://{Facts.offline(one).hub_ip}:8500"


def test_the_new_steps_run_where_the_site_says(tmp_path):
    import jinja2

    steps = {s.id: s for s in load_steps("classic")}
    assert [s for s in ("classic-consul", "classic-consul-servers", "classic-manager", "classic-replica-manager",
                        "classic-ha") if s in steps] == ["classic-consul", "classic-consul-servers", "classic-manager",
                                                         "classic-replica-manager", "classic-ha"]
    site = _ha(2, "node2")
    when = jinja2.Environment(undefined=jinja2.StrictUndefined).compile_expression
    for step, host, runs in (("classic-consul-servers", "node2", True), ("classic-consul-servers", "node1", False),
                             ("classic-replica-manager", "node2", True), ("classic-replica-manager", "node1", False)):
        assert bool(when(steps[step].when)(cfg=site, host=site.host(host))) is runs, (step, host)
    assert not when(steps["classic-ha"].when)(cfg=make_site("classic"))


# ----------------------------------------------------------------------- the stand-ins


def test_stand_in_commands_carry_the_servers_and_managers():
    site = _ha(2, "node2", stand_ins=True)
    consul = classic.stand_in_command(site, "consul", "10.0.0.12", peers='["10.0.0.10:8300","10.0.0.12:8300"]')
    assert "-e LEADER_IP=10.0.0.10" in consul and "BIND_IP=10.0.0.12" in consul
    assert classic.stand_in_peers(site, {"hub": "10.0.0.10", "node2": "10.0.0.12"}) == \
        "hub=10.0.0.10:4000,node2=10.0.0.12:4000"
    assert classic.stand_in_peers(make_site("classic"), {}) == ""
    alone = classic.stand_in_command(site, "manager", "10.0.0.10", "node1=10.0.0.11:2376")
    paired = classic.stand_in_command(site, "manager", "10.0.0.10", "node1=10.0.0.11:2376",
                                      peers="hub=10.0.0.10:4000,node2=10.0.0.12:4000", self_name="hub")
    assert "SELF=hub" in paired and "SELF" not in alone
    spec = classic.STAND_IN_SPEC + "="
    assert alone.split(spec)[1].split()[0] != paired.split(spec)[1].split()[0]  # apply restarts it


PEERS = {"hub": "10.0.0.10:4000", "node1": "10.0.0.11:4000"}


def test_the_first_manager_up_is_primary_the_other_waits_as_replica():
    replica = {"role": "replica", "primary": ""}
    assert stand_in.elect("hub", PEERS, {"node1": None}, replica) == {"role": "primary", "primary": "10.0.0.10:4000"}
    assert stand_in.elect("node1", PEERS, {"hub": "primary"}, replica) == {"role": "replica", "primary": "10.0.0.10:4000"}
    # both starting at once: the first listed takes it, the other waits for its claim
    assert stand_in.elect("node1", PEERS, {"hub": "replica"}, replica) == replica


def test_the_replica_takes_over_and_keeps_it_when_the_old_primary_returns():
    was_replica = {"role": "replica", "primary": "10.0.0.10:4000"}
    took = stand_in.elect("node1", PEERS, {"hub": None}, was_replica)
    assert took == {"role": "primary", "primary": "10.0.0.11:4000"}
    assert stand_in.elect("node1", PEERS, {"hub": "replica"}, took) == took
    assert stand_in.elect("hub", PEERS, {"node1": "primary"}, {"role": "replica", "primary": ""}) == \
        {"role": "replica", "primary": "10.0.0.11:4000"}
    # two primaries (a partition healed): the later listed one steps down
    assert stand_in.elect("node1", PEERS, {"hub": "primary"}, took)["role"] == "replica"


def test_a_replica_says_its_role_and_primary_in_info():
    status = stand_in.system_status({"node1": "10.0.0.11:2376"}, {"node1": True}, {"node1": 0},
                                    {"role": "replica", "primary": "10.0.0.10:4000"})
    assert status[:2] == [["Role", "replica"], ["Primary", "10.0.0.10:4000"]]
    assert classic_ha.status_pairs(json.dumps(status)) == {"Role": "replica", "Primary": "10.0.0.10:4000",
                                                           "Strategy": "spread", "Filters": "constraint", "Nodes": "1"}
    assert classic_ha.status_pairs("null") == {} and classic_ha.status_pairs("") == {}


# ----------------------------------------------------------------------- verify's reading


def _pairs(role: str, primary: str = "") -> dict[str, str]:
    return {"Role": role, **({"Primary": primary} if primary else {})}


def test_one_primary_and_a_replica_naming_it_pass():
    answers = {"hub": ("10.0.0.10:4000", _pairs("primary"), ""),
               "node1": ("10.0.0.11:4000", _pairs("replica", "10.0.0.10:4000"), "")}
    assert classic_ha.manager_problems(answers) == []


def test_a_stopped_primary_is_named_with_who_serves_now():
    answers = {"hub": ("10.0.0.10:4000", None, "Cannot connect to the Docker daemon at tcp://10.0.0.10:4000"),
               "node1": ("10.0.0.11:4000", _pairs("primary"), "")}
    (line,) = classic_ha.manager_problems(answers)
    assert line.startswith("the swarm manager on hub (10.0.0.10:4000) does not answer: Cannot connect")
    assert "node1 (10.0.0.11:4000) is primary now" in line


def test_a_silent_manager_is_explained_by_the_connection_error_not_the_template():
    out = ("Cannot connect to the Docker daemon at tcp://10.0.0.10:4000. Is the docker daemon running?\n"
           'template: :1:7: executing "" at <.SystemStatus>: reflect: indirection through nil pointer')
    assert classic_ha.why_silent(out).startswith("Cannot connect to the Docker daemon at tcp://10.0.0.10:4000")
    assert classic_ha.why_silent("something else\nlast words") == "last words"
    assert classic_ha.why_silent("") == ""


def test_no_primary_two_primaries_and_a_lost_replica_are_named():
    none = classic_ha.manager_problems({"hub": ("a:4000", _pairs("replica"), ""), "node1": ("b:4000", _pairs("replica"), "")})
    assert any("No elected primary cluster manager" in p for p in none)
    two = classic_ha.manager_problems({"hub": ("a:4000", _pairs("primary"), ""), "node1": ("b:4000", _pairs("primary"), "")})
    assert two == ["more than one primary: hub, node1"]
    lost = classic_ha.manager_problems({"hub": ("a:4000", _pairs("primary"), ""),
                                        "node1": ("b:4000", _pairs("replica", "c:4000"), "")})
    assert lost == ["the replica on node1 names c:4000 primary, not hub (a:4000)"]
    plain = classic_ha.manager_problems({"hub": ("a:4000", {"Strategy": "spread"}, "")})
    assert "started without --replication" in plain[0]


def test_consul_servers_must_agree_on_one_leader_and_list_each_other():
    good = {"hub": ("h:8500", "10.0.0.10:8300", ["10.0.0.10:8300", "10.0.0.12:8300"]),
            "node2": ("n:8500", "10.0.0.10:8300", ["10.0.0.10:8300", "10.0.0.12:8300"])}
    assert classic_ha.consul_problems(good, 2) == []
    down = {**good, "node2": ("n:8500", None, None)}
    assert classic_ha.consul_problems(down, 2) == ["Consul on node2 (n:8500) does not answer"]
    alone = {"hub": ("h:8500", "", ["10.0.0.10:8300"])}
    assert classic_ha.consul_problems(alone, 2) == ["Consul on hub (h:8500) has no leader",
                                                    "Consul on hub (h:8500) lists 1 server(s) (10.0.0.10:8300), not 2: "
                                                    "a server did not join"]
    split = {"hub": ("h:8500", "a:8300", ["a", "b"]), "node2": ("n:8500", "b:8300", ["a", "b"])}
    assert classic_ha.consul_problems(split, 2) == ["the Consul servers name different leaders: a:8300, b:8300"]


def test_the_guard_covers_the_consul_servers_ports_and_hosts():
    assert guard.guarded_ports(True, 1) == (8500,)
    assert guard.guarded_ports(True, 2) == (8500, 8300, 8301, 8302)
    assert guard.serving_hosts(_ha(2, "node2")) == ["hub", "node2"]
    assert guard.serving_hosts(make_site("classic")) == ["hub"]


# ----------------------------------------------------------------------- a clone of another node's disk


def test_a_duplicate_engine_id_names_the_source():
    assert classic_clone.duplicate_of("AAAA:BBBB", {"hub": "CCCC", "node1": "AAAA:BBBB"}) == ["node1"]
    assert classic_clone.duplicate_of("AAAA:BBBB", {"hub": "CCCC", "node1": "DDDD"}) == []
    assert classic_clone.duplicate_of("", {"node1": ""}) == []  # a dockerd that did not answer is no clone


def test_the_clone_recipe_removes_the_containers_first_then_the_key():
    found = classic_clone.parse_containers("0123abcd swarm-agent\n4567ef01 jupyter-alice\n\n")
    assert found == [("0123abcd", "swarm-agent"), ("4567ef01", "jupyter-alice")]
    recipe = classic_clone.clone_recipe(found)
    assert recipe[0] == "docker rm -f 0123abcd 4567ef01"  # while dockerd runs: their restart policy is gone with them
    assert recipe[1].startswith("systemctl stop docker")
    assert recipe[2] == "rm -f /etc/docker/key.json /var/lib/docker/engine-id"
    assert "systemctl start docker" in recipe[3]
    assert classic_clone.clone_recipe([])[0].startswith("systemctl stop docker")


def test_add_nodes_plan_says_whose_clone_and_what_runs():
    clone = classic_clone.Clone("spare1", "AAAA", ["node1"], [("0123abcd", "cloned-from-node1")])
    text = "\n".join(clone.plan_lines())
    assert "cloned from node1's disk" in text and "cloned-from-node1" in text
    assert "  rm -f /etc/docker/key.json /var/lib/docker/engine-id" in text


def test_plan_shows_the_tutorials_commands_for_the_second_server_and_the_replica():
    """What `hubwizard plan` lists for a real site (no stand-ins): 1 hub + node1, both extra roles on node1."""
    from tests.unit.test_doctor_parse import SITE, _rendered

    cmds = {k: " ".join(v) for k, v in _rendered(SITE + HA.format(n=2, replica="node1")).items()}
    url = "consul://10.0.0.10:8500,10.0.0.11:8500"
    assert "--network host -h hub progrium/consul -server -advertise 10.0.0.10 -client 10.0.0.10 " \
           "-bootstrap-expect 2" in cmds["classic-consul@hub"]
    assert "-server -advertise 10.0.0.11 -client 10.0.0.11 -bootstrap-expect 2 -join 10.0.0.10" in \
        cmds["classic-consul-servers@node1"]
    assert f"--replication --advertise 10.0.0.10:4000 {url}" in cmds["classic-manager@hub"]
    assert "manage -H tcp://10.0.0.11:4000" in cmds["classic-replica-manager@node1"]
    assert f"--replication --advertise 10.0.0.11:4000 {url}" in cmds["classic-replica-manager@node1"]
    assert f"join --advertise=10.0.0.11:2376 {url}" in cmds["classic-join@node1"]
    # the tutorial's single server as before
    one = {k: " ".join(v) for k, v in _rendered(SITE).items()}
    assert "-p 10.0.0.10:8500:8500 -h consul progrium/consul -server -bootstrap" in one["classic-consul@hub"]
