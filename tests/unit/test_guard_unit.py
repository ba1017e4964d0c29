"""The guards' one install/check flow (guard_unit): read, converge, and the words of each failure.

A host here is a small firewall model behind the Target's run/put (the commands the flow sends
are parsed, not mocked away): the unit file, whether it is enabled, the rules iptables holds."""

from __future__ import annotations

import re

from hubwizard.actions import guard_unit
from hubwizard.remote.transport import Result

GUARD = guard_unit.Guard("x-guard.service", "/etc/systemd/system/x-guard.service", "X guard", "x-guard",
                         "containers can reach X")
RULES = ["X-IN -p tcp --dport 1 -j DROP", "INPUT -j X-IN"]


class Host:
    def __init__(self, *, restart_makes_rules: bool = True) -> None:
        self.unit, self.enabled, self.rules = "", False, set()
        self.restart_makes_rules, self.commands = restart_makes_rules, []

    def run(self, cmd: str) -> Result:
        self.commands.append(cmd)
        if cmd.startswith("cat "):
            return Result("h", cmd, 0 if self.unit else 1, self.unit, "")
        if cmd.startswith("systemctl is-enabled"):
            return Result("h", cmd, 0 if self.enabled else 1, "", "")
        if "systemctl restart" in cmd:
            self.enabled = True
            if self.restart_makes_rules:
                self.rules = set(RULES)
            return Result("h", cmd, 0, "", "")
        asked = re.findall(r"iptables -w -C (.*?) 2>/dev/null", cmd)
        return Result("h", cmd, 0, "".join(f"{r}\n" for r in asked if r not in self.rules), "")

    def target(self) -> guard_unit.Target:
        return guard_unit.Target("node1", self.run, lambda data: setattr(self, "unit", data.decode()))


def _read(host: Host, t: guard_unit.Target | None = None) -> guard_unit.Target:
    return guard_unit.read(GUARD, t or host.target(), "[Unit]\nwanted\n", RULES)


def test_a_bare_host_fails_the_check_then_converges_once():
    host = Host()
    t = _read(host)
    assert guard_unit.check_failure(GUARD, t) == f"{GUARD.unit_path} is missing, differs or is not enabled"
    assert "containers can reach X: 2 rule(s) missing" in (guard_unit.verify_failure(GUARD, t) or "")
    assert "apply --only x-guard" in (guard_unit.verify_failure(GUARD, t) or "")
    assert guard_unit.converge(GUARD, t, lambda t: _read(host, t)) == (None, True)
    again = _read(host)
    assert guard_unit.check_failure(GUARD, again) is None and guard_unit.verify_failure(GUARD, again) is None
    assert guard_unit.converge(GUARD, again, lambda t: _read(host, t)) == (None, False)


def test_a_unit_that_runs_but_makes_no_rules_says_so():
    host = Host(restart_makes_rules=False)
    error, changed = guard_unit.converge(GUARD, _read(host), lambda t: _read(host, t))
    assert changed and error == ("node1: x-guard.service ran but 2 rule(s) are missing, "
                                 f"e.g. iptables -A {RULES[0]}")


def test_rules_without_an_enabled_unit_would_be_lost_with_docker():
    host = Host()
    host.rules = set(RULES)
    t = _read(host)
    assert "would be lost when Docker restarts" in (guard_unit.verify_failure(GUARD, t) or "")
    assert guard_unit.check_failure(GUARD, t, "node1: ") == (f"node1: {GUARD.unit_path} is missing, differs or "
                                                             "is not enabled")


def test_ipv6_rules_are_checked_only_where_ip6tables_answers():
    host = Host()
    guard_unit.missing_rules(host.run, RULES, ["INPUT -p tcp --dport 1 ! -i lo -j DROP"])
    assert "if ip6tables -w -L INPUT -n >/dev/null 2>&1; then ip6tables -w -C INPUT" in host.commands[-1]
    guard_unit.missing_rules(host.run, RULES)
    assert "ip6tables" not in host.commands[-1]
