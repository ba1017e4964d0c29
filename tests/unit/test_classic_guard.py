"""Issue 12 items 5 and 6 on the classic track, the parts that are pure logic: Consul (and the
manager's :4000 when it has no client certificates) reachable from the cluster's hosts only,
never from a container; the manager and agents on their host's network so they still reach
it; only the hub holds a certificate that acts as a client; /home exported with root_squash
and guarded from containers. The attacks themselves run in tests/integration/test_classic.py."""

from __future__ import annotations

import re

from hubwizard.actions import classic_guard as guard
from hubwizard.core.render import PATHS
from tests.unit.test_doctor_parse import SITE, _rendered
from tests.unit.test_render import files_by_path, make_site

HUB, NODES = ["10.0.0.10"], ["10.0.0.10", "10.0.0.11", "127.0.0.1"]


def test_consul_only_from_the_clusters_hosts_on_the_hub():
    rules = guard.in_rules(NODES, guard.guarded_ports(True))
    accepts = [r for r in rules if r.endswith("-j RETURN")]
    assert accepts == [f"HUBWIZARD-CONSUL-IN -s {ip} -p tcp --dport 8500 -j RETURN" for ip in NODES]
    # everyone else (strangers, containers on the hub) refused, after the hosts
    assert rules[-1] == "HUBWIZARD-CONSUL-IN -p tcp --dport 8500 -m conntrack --ctstate NEW -j REJECT --reject-with tcp-reset"
    assert not any("/" in r.split(" -s ")[-1].split()[0] for r in accepts)  # single hosts, never a subnet


def test_containers_refused_on_every_host_published_port_included():
    node = guard.fwd_rules(HUB, NODES, (8500,), on_hub=False)
    refuse = "HUBWIZARD-CONSUL-FWD -p tcp -m conntrack --ctstate NEW --ctorigdst 10.0.0.10 --ctorigdstport 8500"
    assert f"{refuse} -j REJECT --reject-with tcp-reset" in node
    assert not any(" -o " in r for r in node)
    # the hosts' own (forwarded after DNAT) traffic passes first; a container's source never matches
    first_reject = next(i for i, r in enumerate(node) if "REJECT" in r)
    assert all(r.endswith("RETURN") for r in node[:first_reject])
    hub = guard.fwd_rules(HUB, NODES, (8500,), on_hub=True)
    assert "HUBWIZARD-CONSUL-FWD -o docker0 -p tcp --dport 8500 -m conntrack --ctstate NEW -j REJECT " \
           "--reject-with tcp-reset" in hub


def test_on_the_hosts_only_root_connects():
    rules = guard.out_rules(HUB, (8500,))
    assert rules == ["HUBWIZARD-CONSUL-OUT -p tcp -m conntrack --ctstate NEW --ctorigdst 10.0.0.10 "
                     "--ctorigdstport 8500 -m owner ! --uid-owner 0 -j REJECT --reject-with tcp-reset"]
    assert set(rules) <= set(guard.all_rules(HUB, NODES, (8500,), on_hub=False))


def test_the_managers_port_is_guarded_only_without_tls():
    assert guard.guarded_ports(True) == (8500,)
    assert guard.guarded_ports(False) == (8500, 4000)


def test_unit_refills_its_chains_and_runs_again_when_docker_starts():
    text = guard.unit_text(HUB, NODES, (8500,), on_hub=True)
    execs = [line.removeprefix("ExecStart=") for line in text.splitlines() if line.startswith("ExecStart=")]
    flushes = [i for i, e in enumerate(execs) if " -F " in e]
    appends = [i for i, e in enumerate(execs) if " -A " in e]
    assert flushes and appends and max(flushes) < min(appends)
    assert len(appends) == len(guard.all_rules(HUB, NODES, (8500,), True))
    assert any("-I DOCKER-USER -j HUBWIZARD-CONSUL-FWD" in e for e in execs)
    assert any("-I INPUT -j HUBWIZARD-CONSUL-IN" in e for e in execs)
    assert any("-I OUTPUT -j HUBWIZARD-CONSUL-OUT" in e for e in execs)
    assert "WantedBy=docker.service" in text and "PartOf=docker.service" in text
    node = guard.unit_text(HUB, NODES, (8500,), on_hub=False)
    assert "INPUT" not in node and "HUBWIZARD-CONSUL-IN" not in node  # a node's own ports untouched


def test_manager_and_agents_run_on_their_hosts_network_with_the_managers_cert():
    cmds = _rendered(SITE)
    manager = " ".join(cmds["classic-manager@hub"])
    assert "--network host" in manager and " -p " not in manager.split("docker run")[-1].split("manage")[0]
    assert "--tlscert=/certs/manager-cert.pem --tlskey=/certs/manager-key.pem" in manager
    assert "server-cert.pem" not in manager
    assert "docker run -d --name swarm-agent --restart always --network host" in " ".join(cmds["classic-join@node1"])
    assert "classic-consul-guard@node1" in cmds and "classic-consul-guard@hub" in cmds


def test_classic_home_export_squashes_root_and_is_guarded():
    site = make_site(track="classic")
    content = files_by_path(site)[PATHS["exports"]].content
    lines = [line for line in content.splitlines() if line and not line.startswith("#")]
    assert lines and all(line.startswith("/home ") for line in lines)
    for opts in re.findall(r"\(([^)]*)\)", " ".join(lines)):
        assert "root_squash" in opts.split(",") and "no_root_squash" not in opts
    assert "*(" not in " ".join(lines)
    cmds = _rendered(SITE)
    assert "classic-nfs-guard@node1" in cmds and "classic-nfs-guard@hub" in cmds
