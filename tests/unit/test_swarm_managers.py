"""[swarm] managers = 3 (issue 16 item 4): the site field, which nodes become managers, where
the hub and users' servers are placed, and verify's verdict on the managers. The real swarm
losing a manager: tests/integration/test_swarm_managers.py."""

from __future__ import annotations

import pytest

from hubwizard.actions.hub_service import service_args
from hubwizard.actions.swarm_managers import Manager, managers_of, quorum, wanted_role
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts, generated_files
from hubwizard.core.steps import load_steps
from tests.unit.test_render import make_site

THREE = "[swarm]\nmanagers = 3\n"


def test_the_default_is_one_manager_and_nothing_changes_for_it() -> None:
    site = make_site()
    assert site.swarm.managers == 1 and site.swarm_manager_nodes == []
    assert all(wanted_role(site, n.name) == "worker" for n in site.nodes)
    assert "node.labels.org.hubwizard.hub==true" not in service_args(site, "img", {}, False)


@pytest.mark.parametrize("count", [0, 2, 4, 5])
def test_only_one_or_three_managers(count: int) -> None:
    with pytest.raises((ConfigError, ValueError), match="must be 1 .* or 3"):
        make_site(extra=f"[swarm]\nmanagers = {count}\n")


def test_three_managers_need_two_nodes() -> None:
    site = make_site()
    assert len(site.nodes) >= 2
    with pytest.raises((ConfigError, ValueError), match="needs the hub and 2 nodes"):
        make_site(extra=THREE, **{'role = "node"': 'role = "nfs"'})


def test_the_first_two_nodes_become_managers() -> None:
    site = make_site(extra=THREE)
    first, second, *rest = site.nodes
    assert [h.name for h in site.swarm_manager_nodes] == [first.name, second.name]
    assert wanted_role(site, first.name) == wanted_role(site, second.name) == "manager"
    assert all(wanted_role(site, h.name) == "worker" for h in rest)


def test_the_hub_stays_on_the_hub_and_users_stay_off_it() -> None:
    site = make_site(extra=THREE)
    args = service_args(site, "img", {}, False)
    assert "node.role==manager" in args and "node.labels.org.hubwizard.hub==true" in args
    config = next(f.content for f in generated_files(site, Facts.offline(site)) if f.path.endswith("jupyterhub_config.py"))
    assert '"constraints": ["node.labels.org.hubwizard.hub != true"]' in config
    assert "node.role == worker" not in config


def test_the_quorum_step_runs_only_with_more_managers() -> None:
    step = next(s for s in load_steps("swarm-mode") if s.id == "swarm-managers")
    assert step.when == "cfg.swarm.managers > 1" and step.needs == ("swarm-join",)


def _node(name: str, ip: str, role: str = "manager", reach: str = "reachable", leader: bool = False) -> dict:
    status = {"Addr": f"{ip}:2377", "Reachability": reach, "Leader": leader} if role == "manager" else None
    return {"Spec": {"Role": role}, "ManagerStatus": status, "Description": {"Hostname": f"h-{name}"},
            "Status": {"Addr": ip}}


def test_managers_are_named_as_the_site_file_names_them() -> None:
    nodes = [_node("hub", "10.0.0.1", leader=True), _node("n1", "10.0.0.2", reach="unreachable"),
             _node("w", "10.0.0.4", role="worker"), _node("x", "10.0.0.9")]
    found = managers_of(nodes, {"10.0.0.1": "hub", "10.0.0.2": "node1"})
    assert found == [Manager("h-x", True, False), Manager("hub", True, True), Manager("node1", False, False)]


def test_three_reachable_managers_pass() -> None:
    result = quorum([Manager("hub", True, True), Manager("node1", True, False), Manager("node2", True, False)],
                    3, "hub")
    assert result.ok and "survives the loss of one" in result.message


def test_a_down_manager_is_named_with_the_fix_and_the_quorum_state() -> None:
    result = quorum([Manager("hub", True, True), Manager("node1", False, False), Manager("node2", True, False)],
                    3, "hub")
    assert not result.ok
    assert "node1 unreachable" in result.message and "keeps its quorum (2 of 3)" in result.message
    assert "start dockerd on node1" in result.message


def test_two_down_managers_is_a_lost_quorum() -> None:
    result = quorum([Manager("hub", True, True), Manager("node1", False, False), Manager("node2", False, False)],
                    3, "hub")
    assert not result.ok and "quorum is LOST (1 of 3)" in result.message


def test_a_missing_manager_says_apply_promotes() -> None:
    result = quorum([Manager("hub", True, True)], 3, "hub")
    assert not result.ok and "--only swarm-join" in result.message


@pytest.mark.parametrize("extra", ["", THREE])
def test_the_join_recipe_asks_each_node_for_its_role(extra: str) -> None:
    """plan shows `swarm_join({"role": "manager"})` on the nodes that become managers, and the
    unchanged worker item (the same digest as before) on the others."""
    import jinja2

    site = make_site(extra=extra)
    step = next(s for s in load_steps("swarm-mode") if s.id == "swarm-join")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for host in site.nodes:
        for phase in (step.apply, step.verify):
            roles = [i.args["role"] for i in phase if i.args.get("role")
                     and (not i.when or env.compile_expression(i.when)(cfg=site, host=host))]
            assert roles == [wanted_role(site, host.name)], (host.name, roles)
