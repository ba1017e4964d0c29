"""The Swarm endpoint mode (issue 13 item 6): vip where every swarm host's kernel has IPVS, else
dnsrr; [swarm] endpoint_mode overrides; the hub service's arguments, its in-place update and
users' servers' rendered config follow the choice.

Fast and pure, except the IPVS probe, which runs for real in this machine's shell."""

from __future__ import annotations

import ast
import os
import subprocess

import pytest

from hubwizard.actions.hub_service import service_args, update_flags
from hubwizard.actions.hub_spec import lines_from_args
from hubwizard.core.config import parse_site
from hubwizard.core.endpoint import IPVS_PROBE, Ipvs, choose, parse_probe
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts, generated_files
from tests.unit.sitetext import LAB_LOGIN, host, site_text

NODE2 = host("node2", "10.0.0.12", "node")
HAS, LOADED = Ipvs("loadable", "6.1.0-57-cloud-amd64"), Ipvs("loaded", "6.1.0-57-cloud-amd64")
NONE = Ipvs("absent", "6.18.44-fc")
CONFIG = "/srv/hubwizard/hub/jupyterhub_config.py"


def site(mode: str | None = None, extra: str = ""):
    swarm = f'\n[swarm]\nendpoint_mode = "{mode}"\n' if mode is not None else ""
    return parse_site(site_text(more_hosts=NODE2 + extra) + LAB_LOGIN + swarm)


def test_auto_is_vip_when_every_swarm_host_has_ipvs() -> None:
    choice = choose(site(), {"hub": LOADED, "node1": HAS, "node2": HAS})
    assert (choice.mode, choice.line, choice.blocked) == ("vip", "endpoint mode: vip (every host has IPVS)", False)


def test_auto_is_dnsrr_naming_the_host_and_kernel_without_ipvs() -> None:
    choice = choose(site(), {"hub": HAS, "node1": HAS, "node2": NONE})
    assert choice.mode == "dnsrr" and not choice.blocked
    assert choice.line == "endpoint mode: dnsrr: node2 has no IPVS (kernel 6.18.44-fc)"
    two = choose(site(), {"hub": NONE, "node1": NONE, "node2": HAS})
    assert two.line == "endpoint mode: dnsrr: hub, node1 have no IPVS (kernel 6.18.44-fc)"


def test_auto_without_facts_is_dnsrr_and_says_the_hosts_were_not_probed() -> None:
    """Offline (`hubwizard render`) or a host down in plan: never a VIP that may not work."""
    choice = choose(site(), {"hub": HAS, "node1": HAS})
    assert choice.mode == "dnsrr" and "node2 was not probed for IPVS" in choice.line
    assert choose(site(), {}).mode == "dnsrr"


def test_only_swarm_hosts_count_not_a_separate_nfs_host() -> None:
    nfs = host("store", "10.0.0.20", "nfs") + '\n[storage]\nserver = "store"\n'
    assert choose(site(extra=nfs), {"hub": HAS, "node1": HAS, "node2": HAS, "store": NONE}).mode == "vip"


def test_dnsrr_set_explicitly_wins_even_with_ipvs() -> None:
    choice = choose(site("dnsrr"), {"hub": HAS, "node1": HAS, "node2": HAS})
    assert (choice.mode, choice.line) == ("dnsrr", "endpoint mode: dnsrr (set in [swarm] endpoint_mode)")


def test_vip_set_explicitly_on_a_host_without_ipvs_is_refused_naming_the_host_and_the_fix() -> None:
    assert not choose(site("vip"), {"hub": HAS, "node1": HAS, "node2": HAS}).blocked
    choice = choose(site("vip"), {"hub": HAS, "node1": HAS, "node2": NONE})
    assert choice.mode == "vip" and choice.blocked and choice.lacking == ("node2",)
    assert "but node2 has no IPVS (kernel 6.18.44-fc)" in choice.line
    refusal = choice.refusal()
    assert "node2 has no IPVS (kernel 6.18.44-fc)" in refusal
    assert "modprobe ip_vs" in refusal and 'endpoint_mode = "auto"' in refusal


@pytest.mark.parametrize("bad", ["VIP", "ipvs", "", "dns"])
def test_a_bad_endpoint_mode_is_refused_with_the_choices(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        site(bad)
    text = str(err.value)
    assert "swarm.endpoint_mode" in text and '"auto"' in text and '"vip"' in text and '"dnsrr"' in text


def test_the_default_is_auto() -> None:
    assert site().swarm.endpoint_mode == "auto"


def test_parse_probe() -> None:
    assert parse_probe("loaded 6.1.0-57-cloud-amd64\n") == Ipvs("loaded", "6.1.0-57-cloud-amd64")
    assert parse_probe("absent 6.18.44-fc\n").present is False
    assert parse_probe("").state == "unknown" and parse_probe("sh: 1: syntax error").state == "unknown"


def test_the_probe_runs_in_a_real_shell_and_names_this_kernel() -> None:
    """The command the hosts run (no sudo), here: one of the three states and `uname -r`."""
    done = subprocess.run(["sh", "-c", IPVS_PROBE], capture_output=True, text=True, timeout=30)
    fact = parse_probe(done.stdout)
    assert done.returncode == 0 and fact.state in ("loaded", "loadable", "absent"), done.stdout + done.stderr
    assert fact.kernel == os.uname().release
    assert (fact.state == "loaded") == os.path.isdir("/sys/module/ip_vs")


def _config(facts_ipvs: dict[str, Ipvs], mode: str | None = None) -> str:
    s = site(mode)
    facts = Facts.offline(s)
    facts.ipvs.update(facts_ipvs)
    (f,) = [f for f in generated_files(s, facts) if f.path == CONFIG]
    ast.parse(f.content)
    return f.content


def test_users_servers_get_the_chosen_mode_in_the_rendered_config() -> None:
    every = {"hub": HAS, "node1": HAS, "node2": HAS}
    vip = _config(every)
    assert "c.SwarmSpawner.extra_endpoint_spec = {\"mode\": 'vip'}" in vip
    dnsrr = _config({**every, "node2": NONE})
    assert "c.SwarmSpawner.extra_endpoint_spec = {\"mode\": 'dnsrr'}" in dnsrr
    assert "{\"mode\": 'dnsrr'}" in _config({})  # offline render: not probed
    assert "{\"mode\": 'dnsrr'}" in _config(every, "dnsrr")


def test_the_config_names_no_host_or_kernel() -> None:
    """The config is in the hub image's build context: which hosts lack IPVS, or a kernel update,
    must not change it (a change there means a new hub image and a hub restart). Seen in CI:
    add-node of a node without IPVS made verify fail "built from context X, the current one is Y"."""
    assert _config({"hub": NONE, "node1": NONE}) == _config({"hub": NONE, "node1": NONE, "node2": NONE})
    other_kernel = Ipvs("absent", "6.1.0-99-cloud-amd64")
    assert _config({"node2": NONE}) == _config({"node2": other_kernel})
    every = {"hub": HAS, "node1": HAS, "node2": HAS}
    assert _config(every) == _config({**every, "node2": Ipvs("loaded", "6.1.0-99-cloud-amd64")})


def test_the_hub_service_is_created_with_the_chosen_mode() -> None:
    args = service_args(site(), "reg:5000/hub@sha256:aaa", {}, True, "vip")
    assert args[args.index("--endpoint-mode") + 1] == "vip"
    assert "endpoint-mode: vip" in lines_from_args(args)


def test_a_running_dnsrr_hub_is_updated_in_place_to_vip_and_vip_to_dnsrr_is_a_new_service() -> None:
    s = site()
    dnsrr = lines_from_args(service_args(s, "reg:5000/hub@sha256:aaa", {}, True, "dnsrr"))
    vip = lines_from_args(service_args(s, "reg:5000/hub@sha256:aaa", {}, True, "vip"))
    assert update_flags(dnsrr, vip) == ["--endpoint-mode", "vip"]
    assert update_flags(vip, vip) == []
    # an update to dnsrr leaves the old virtual IP in Swarm's DNS (moby#38575): created anew
    assert update_flags(vip, dnsrr) is None
