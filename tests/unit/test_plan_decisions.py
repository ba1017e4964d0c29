"""plan's verdicts from fake check outcomes: a missing prerequisite is "needs STEP first", never
FAILED; a crash is one line for people; unreachable hosts still show their commands."""

from __future__ import annotations

import io
import json

import pytest

from hubwizard.cli.report import HumanPrinter, JsonCollector, plan_summary, state_of
from hubwizard.core.errors import ConfigError
from hubwizard.core.events import HostResult, StepFinished, StepStarted
from hubwizard.core.steps import parse_recipe
from hubwizard.engine.planning import CheckOutcome, PlanBook, crash_line, decide, pending

FAILED_CHECK = CheckOutcome(has_check=True, passed=False)
CRASHED = CheckOutcome(has_check=True, passed=False, crashed="the Docker engine on hub does not answer")


def bare_book() -> PlanBook:
    """On bare machines: docker would change on hub and node1, swarm-init on the hub."""
    book = PlanBook()
    for host in ("hub", "node1"):
        book.add("docker", host)
    book.add("swarm-init", "hub")
    return book


def test_converged_check_is_unchanged_whatever_came_before():
    d = decide("hub-image", ("docker",), "hub", CheckOutcome(has_check=True, passed=True), bare_book())
    assert d.state == "unchanged"


def test_declared_prerequisite_pending_on_the_host_is_named():
    d = decide("hub-image", ("docker", "registry"), "hub", CRASHED, bare_book())
    assert (d.state, d.needs, d.needs_host) == ("needs", "docker", "hub")
    assert d.message == "needs step docker first"


def test_declared_prerequisite_on_another_host_says_where():
    book = PlanBook()
    book.add("hub-image", "hub")
    d = decide("prepull", ("docker", "hub-image"), "node1", FAILED_CHECK, book)
    assert (d.state, d.needs) == ("needs", "hub-image")
    assert d.message == "needs step hub-image on hub first"


def test_prerequisite_on_the_same_host_wins_over_one_elsewhere():
    book = PlanBook()
    book.add("hub-image", "hub")
    book.add("docker", "node1")
    d = decide("prepull", ("hub-image", "docker"), "node1", FAILED_CHECK, book)
    assert (d.needs, d.needs_host) == ("docker", "node1")


def test_any_check_failure_after_a_pending_step_on_that_host_needs_the_earliest():
    """No declaration: the generic rule names the first step that would change on the host."""
    d = decide("network", None, "hub", FAILED_CHECK, bare_book())
    assert (d.state, d.needs) == ("needs", "docker")
    crashed = decide("anything", None, "hub", CRASHED, bare_book())
    assert (crashed.state, crashed.needs) == ("needs", "docker")


def test_declared_needs_turn_the_generic_rule_off_for_a_plain_failure():
    """storage declares `needs: []`: its failed check is its own work, not docker's."""
    assert decide("storage", (), "hub", FAILED_CHECK, bare_book()).state == "would-change"
    d = decide("storage-clients", ("storage",), "node1", FAILED_CHECK, bare_book())
    assert d.state == "would-change" and d.needs == ""
    crashed = decide("storage", (), "hub", CRASHED, bare_book())  # a crash still points at docker
    assert (crashed.state, crashed.needs) == ("needs", "docker")


def test_pending_step_on_another_host_does_not_excuse_an_undeclared_failure():
    book = PlanBook()
    book.add("docker", "node1")
    d = decide("network", None, "hub", FAILED_CHECK, book)
    assert d.state == "would-change" and d.needs == ""


def test_crash_with_nothing_pending_is_failed_in_one_line():
    d = decide("hub-image", ("docker",), "hub", CRASHED, PlanBook())
    assert d.state == "failed"
    assert d.message == "could not check: the Docker engine on hub does not answer"


def test_plain_would_change_and_changed_inputs():
    assert decide("docker", None, "hub", FAILED_CHECK, PlanBook()).message == "not in the desired state"
    changed = CheckOutcome(has_check=True, passed=True, changed_inputs=True)
    assert decide("docker", (), "hub", changed, PlanBook()).message == "inputs changed since last apply"


def test_step_without_check_is_judged_by_the_journal():
    assert decide("e2e", (), "hub", CheckOutcome(has_check=False, same_inputs=True), bare_book()).state == "unchanged"
    fresh = decide("e2e", ("hub-service",), "hub", CheckOutcome(has_check=False), PlanBook())
    assert fresh.state == "would-change"


def test_a_step_is_not_its_own_prerequisite():
    book = PlanBook()
    book.add("docker", "hub")
    assert decide("docker", ("docker",), "hub", FAILED_CHECK, book).state == "would-change"


def test_only_steps_with_commands_enter_the_book():
    assert pending("needs", has_commands=True) and pending("would-change", has_commands=True)
    assert not pending("would-change", has_commands=False)  # preflight: nothing to run
    assert not pending("unchanged", has_commands=True) and not pending("unreachable", has_commands=True)


class _FakeConnectionError(OSError):
    pass


_FakeConnectionError.__name__ = "ConnectionError"


def test_crash_line_is_for_people():
    assert crash_line(_FakeConnectionError("('Connection aborted.', RemoteDisconnected(...))"), "hub") == (
        "the Docker engine on hub does not answer (is dockerd installed and running?)")
    line = crash_line(KeyError("x" * 500), "node1")
    assert "\n" not in line and len(line) < 220 and "node1" in line


def _results() -> list:
    return [
        StepStarted("docker", "Docker engine", ("hub",)),
        HostResult("docker", "hub", "would-change", "not in the desired state", commands=("apt-get install docker.io",)),
        StepFinished("docker", "would-change"),
        StepStarted("hub-image", "Build", ("hub",)),
        HostResult("hub-image", "hub", "would-change", "needs step docker first", commands=("build_hub_image()",),
                   needs="docker"),
        StepFinished("hub-image", "would-change"),
        StepStarted("prepull", "Pull", ("node1", "node2")),
        HostResult("prepull", "node1", "unreachable", "not checked: host unreachable", output_tail="refused",
                   fix="check the address", commands=("prepull_images()",)),
        HostResult("prepull", "node2", "unchanged", "already in the desired state"),
        StepFinished("prepull", "unreachable"),
    ]


def test_printer_says_would_change_needs_step_first():
    out = io.StringIO()
    printer = HumanPrinter(out, show_commands=False)
    for e in _results():
        printer(e)
    text = out.getvalue()
    assert "would change  hub (needs step docker first)" in text
    assert "$ build_hub_image()" in text and "$ prepull_images()" in text
    assert "UNREACHABLE  node1 - not checked: host unreachable" in text
    assert "FAILED" not in text


def test_printer_explains_an_unreachable_host_once():
    """Every step of a host that is down (and of the nodes behind it) is listed; why and the
    fix are printed the first time only, a step without commands included."""
    out = io.StringIO()
    printer = HumanPrinter(out)
    for step, host, commands in (("a", "hub", ("true",)), ("a", "node1", ("true",)), ("b", "hub", ())):
        printer(HostResult(step, host, "unreachable", "not checked: host unreachable", output_tail="hub: refused",
                           fix="check the address", commands=commands))
    printer(HostResult("a", "node2", "unreachable", "not checked: host unreachable", output_tail="node2: timeout",
                       fix="check the address"))
    text = out.getvalue()
    assert text.count("UNREACHABLE") == 4
    assert text.count("| hub: refused") == 1 and text.count("| node2: timeout") == 1


def test_json_carries_a_state_per_step_and_host():
    sink = JsonCollector()
    for e in _results():
        sink(e)
    doc = json.loads(sink.document("plan", 3))
    states = {(s["id"], h): v["state"] for s in doc["steps"] for h, v in s["hosts"].items()}
    assert states == {("docker", "hub"): "would-change", ("hub-image", "hub"): "needs",
                      ("prepull", "node1"): "unreachable", ("prepull", "node2"): "unchanged"}
    hub_image = doc["steps"][1]["hosts"]["hub"]
    assert hub_image["needs"] == "docker" and hub_image["commands"] == ["build_hub_image()"]


def test_plan_summary_counts_states_and_names_unreachable_hosts():
    results = [e for e in _results() if isinstance(e, HostResult)]
    assert state_of(results[1]) == "needs"
    text = plan_summary(results)
    assert "1 would change, 1 would change after an earlier step, 1 unchanged" in text
    assert "node1 could not be reached" in text


def test_recipe_needs_parse_and_are_checked():
    (none,) = parse_recipe("id: a\n", "t.yaml")
    assert none.needs is None  # not declared: plan's generic rule
    (empty,) = parse_recipe("id: a\nneeds: []\n", "t.yaml")
    assert empty.needs == ()
    (one,) = parse_recipe("id: a\nneeds: docker\n", "t.yaml")
    assert one.needs == ("docker",)
    (two,) = parse_recipe("id: a\nneeds: [docker, registry]\n", "t.yaml")
    assert two.needs == ("docker", "registry")
    with pytest.raises(ConfigError, match="needs must be"):
        parse_recipe("id: a\nneeds: [1]\n", "t.yaml")


def test_shipped_recipes_declare_known_prerequisites():
    from hubwizard.core.steps import load_steps

    steps = {s.id: s for s in load_steps("swarm-mode")}
    assert steps["hub-image"].needs[0] == "docker"
    assert "hub-image" in steps["prepull"].needs
    order = [s.id for s in load_steps("swarm-mode")]
    for s in steps.values():
        assert all(order.index(n) < order.index(s.id) for n in s.needs or () if n in order), s.id


def test_unreachable_message_names_the_jump_host_it_ends_at():
    from hubwizard.engine.planning import unreachable_message

    assert unreachable_message(None, False) == "not checked: host unreachable"
    assert unreachable_message("hub", False) == "not checked: host unreachable"  # the hub answers, the node not
    assert unreachable_message("hub", True) == "not checked: unreachable through hub (hub is unreachable)"
