"""The swarm guard's rules and who they let in; the overlay's encryption probe (issue 12 item 12)."""

from __future__ import annotations

from types import SimpleNamespace

from hubwizard.actions import swarm, swarm_guard
from hubwizard.core.render import Facts
from tests.unit.test_hub_actions import site


def test_sources_are_every_host_spares_included_never_the_subnet():
    s = site()
    ctx = SimpleNamespace(site=s, facts=Facts.offline(s))
    assert swarm_guard.cluster_sources(ctx) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]  # spare1 too
    s2 = site().model_copy(update={"site": site().site.model_copy(update={"subnet": "10.0.0.0/28"})})
    assert swarm_guard.cluster_sources(SimpleNamespace(site=s2, facts=Facts.offline(s2))) == [
        "10.0.0.10", "10.0.0.11", "10.0.0.12"]  # the subnet holds other machines too


def test_every_swarm_port_dropped_after_the_cluster_returns():
    rules = swarm_guard.guard_rules(["10.0.0.10", "10.0.0.11"])
    for proto, port in swarm_guard.PORTS:
        mine = [r for r in rules if r.startswith(swarm_guard.IN_CHAIN) and f"--dport {port} " in r and proto in r]
        assert mine[-1].endswith("-j DROP") and all("-j RETURN" in r for r in mine[:-1])
        assert {r.split("-s ")[1].split()[0] for r in mine[:-1]} == {"10.0.0.10", "10.0.0.11"}
    assert rules[0] == f"{swarm_guard.IN_CHAIN} -i lo -j RETURN"
    text = swarm_guard.unit_text(["10.0.0.10"])
    assert "PartOf=docker.service" in text and "WantedBy=docker.service" in text
    assert all(f"-I INPUT -p {p} --dport {n} ! -i lo -j DROP" in text for p, n in swarm_guard.PORTS)  # IPv6


def test_overlay_options_say_why_not_encrypted():
    hosts = [SimpleNamespace(name="hub"), SimpleNamespace(name="node1")]

    class T:
        def __init__(self, ok: bool) -> None:
            self.ok = ok

        def run(self, command, sudo=False):
            assert "ip xfrm state add" in command and "rfc4106(gcm(aes))" in command
            return SimpleNamespace(ok=self.ok, output="" if self.ok else "Error: Requested AEAD algorithm not found.")

    conns = {"hub": T(True), "node1": T(False)}
    ctx = SimpleNamespace(site=SimpleNamespace(active_hosts=hosts), connections=SimpleNamespace(get=conns.get))
    options, said = swarm.overlay_options(ctx)
    assert options == {} and said.startswith("NOT encrypted") and "node1" in said and "AEAD" in said
    conns["node1"] = T(True)
    assert swarm.overlay_options(ctx) == ({"encrypted": ""}, "encrypted (IPsec ESP between the hosts)")


def test_self_hosted_registry_port_guarded_too():
    plain = site()
    assert swarm_guard.ports_for(plain) == swarm_guard.PORTS
    hosted = site().model_copy(update={"registry": site().registry.model_copy(update={"self_hosted": True})})
    ports = swarm_guard.ports_for(hosted)
    rules = swarm_guard.guard_rules(["10.0.0.10"], ports)
    assert f"{swarm_guard.IN_CHAIN} -p tcp --dport 5000 -j DROP" in rules
    assert f"{swarm_guard.FWD_CHAIN} -d 10.0.0.10 -p tcp --dport 5000 -j REJECT --reject-with tcp-reset" in rules


def test_registry_recipe_binds_the_internal_address():
    from hubwizard.actions import registry

    hosted = site().model_copy(update={"registry": site().registry.model_copy(update={"self_hosted": True})})
    facts = Facts.offline(hosted)
    yml, conf = registry.render_configs(hosted, facts, registry.layout(facts))
    assert f"listen {facts.hub_ip}:5000 ssl;" in conf and "addr: 127.0.0.1:5001" in yml  # nginx, registry
