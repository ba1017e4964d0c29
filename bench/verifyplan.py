"""The verification checks of a site as plain shell commands, for the three-way comparison.

Why: to compare `hubwizard verify` with Ansible and with a `ssh host cmd` loop fairly, all
three must run the *same* commands. They come from the recipes: every verify item of every
step, rendered per host with the engine's own context (Engine.context + render_command), so
the strings are byte for byte what the engine runs. File items become a `sha256sum -c` of the
content the engine would render (what the engine itself does, in one command). Call items are
Python functions with no shell equivalent: they are counted and left out of all three.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Check:
    """One verify item on one host, as a shell command."""

    step: str
    host: str
    label: str
    command: str
    sudo: bool = True
    timeout: float | None = None
    kind: str = "run"  # run | file


@dataclass
class VerifyPlan:
    """Every shell-able verify check per host, and what had to be left out (and why)."""

    checks: list[Check] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> count of (item, host)
    steps: list[str] = field(default_factory=list)  # ids of steps that kept at least one check

    def add_left_out(self, reason: str) -> None:
        self.left_out[reason] = self.left_out.get(reason, 0) + 1

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(c.host for c in self.checks))


def shell_items(step: Any) -> tuple[Any, ...]:
    """The verify items of a step that have a shell equivalent (run and file items)."""
    return tuple(i for i in step.verify if (i.run or i.file) and i.stdin is None)


def restricted_steps(steps: Iterable[Any]) -> list[Any]:
    """The steps with only their shell-able verify items: what `hubwizard verify` runs for a
    like-for-like comparison (the Engine is given these steps instead of the recipes' own)."""
    out = []
    for step in steps:
        items = shell_items(step)
        if items:
            out.append(replace(step, verify=items))
    return out


def file_check_command(content: bytes, path: str) -> str:
    """The engine's file verification (sha256 of the rendered content vs the host's file) as one command."""
    want = hashlib.sha256(content).hexdigest()
    return f"printf '%s  %s\\n' {want} {shlex.quote(path)} | sha256sum -c --quiet --status"


def build(engine: Any, steps: Iterable[Any] | None = None) -> VerifyPlan:
    """Render every verify item of ``steps`` (default: the engine's) per host, the way
    Engine.run('verify') would."""
    from hubwizard.core.templating import render_asset, render_command

    plan = VerifyPlan()
    for step in engine.steps if steps is None else steps:
        if not step.verify:
            continue
        kept = False
        for host in engine.hosts_for(step):
            ctx = engine.context(host)
            if not engine._when(step.when, ctx):
                plan.add_left_out("step not needed on this site (when: false)")
                continue
            for item in step.verify:
                if not engine._when(item.when, ctx):
                    plan.add_left_out("item not needed on this host (when: false)")
                elif item.call:
                    plan.add_left_out(f"call: {item.call} (Python, no shell equivalent)")
                elif item.stdin is not None:
                    plan.add_left_out("run with stdin (secret)")
                elif item.run:
                    plan.checks.append(Check(step.id, host.name, item.label, render_command(item.run, ctx),
                                             item.sudo, item.timeout))
                    kept = True
                else:
                    path = engine._path(item, ctx)
                    cmd = file_check_command(render_asset(item.file, ctx).encode(), path)
                    plan.checks.append(Check(step.id, host.name, item.label, cmd, item.sudo, item.timeout, "file"))
                    kept = True
        if kept:
            plan.steps.append(step.id)
    return plan


# ------------------------------------------------------------------ Ansible


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escaping is valid YAML) marked !unsafe so Ansible
    never templates it: recipe commands carry Go templates such as '{{.Driver}}'."""
    return "!unsafe " + json.dumps(text)


def inventory_yaml(site: Any, hosts: list[str]) -> str:
    """An Ansible YAML inventory of ``hosts`` from the site file: address, port, user, key and
    the site's known_hosts with strict checking (the same trust as hubwizard's)."""
    known = Path(site.ssh.known_hosts or "~/.ssh/known_hosts").expanduser()
    lines = ["all:", "  hosts:"]
    for name in hosts:
        h = site.host(name)
        lines += [f"    {name}:",
                  f"      ansible_host: {json.dumps(h.address)}",
                  f"      ansible_port: {int(h.port)}",
                  f"      ansible_user: {json.dumps(h.user)}"]
        if h.key:
            lines.append(f"      ansible_ssh_private_key_file: {json.dumps(str(Path(h.key).expanduser()))}")
        args = f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
        lines.append(f"      ansible_ssh_common_args: {json.dumps(args)}")
    return "\n".join(lines) + "\n"


def playbook_yaml(plan: VerifyPlan) -> str:
    """One play per step (the hosts the step targets), one shell task per check and host.

    A command can differ per host (host_ip, paths), so each task is bound to its host with
    ``when: inventory_hostname == ...``; tasks whose command is the same on every host of
    the step are merged into one task without a condition. Checks never stop the playbook
    (ignore_errors), as `hubwizard verify` goes on to the next step after a failed check.
    """
    out = ["# Generated by bench/verifyplan.py from the recipes' verify items: do not edit.", "---"]
    for step in plan.steps:
        checks = [c for c in plan.checks if c.step == step]
        hosts = list(dict.fromkeys(c.host for c in checks))
        out += [f"- name: {json.dumps('verify ' + step)}", f"  hosts: {json.dumps(':'.join(hosts))}",
                "  gather_facts: false", "  tasks:"]
        for group in _task_groups(checks, hosts):
            first = group[0]
            out += [f"    - name: {json.dumps(first.label[:120])}",
                    f"      ansible.builtin.shell: {_yaml_str(first.command)}",
                    f"      become: {'true' if first.sudo else 'false'}",
                    "      changed_when: false",
                    "      ignore_errors: true"]
            if first.timeout:
                out.append(f"      timeout: {int(first.timeout)}")
            if len(group) < len(hosts):
                names = sorted(c.host for c in group)
                out.append(f"      when: inventory_hostname in {json.dumps(names)}")
    return "\n".join(out) + "\n"


def _task_groups(checks: list[Check], hosts: list[str]) -> list[list[Check]]:
    """Checks of one step grouped by (label, command, sudo), in first-seen order."""
    groups: dict[tuple[str, str, bool], list[Check]] = {}
    for c in checks:
        groups.setdefault((c.label, c.command, c.sudo), []).append(c)
    return list(groups.values())


def ansible_cfg(*, pipelining: bool, forks: int | None) -> str:
    """ansible.cfg text: empty sections mean Ansible's defaults (forks 5, no pipelining)."""
    lines = ["[defaults]", "host_key_checking = True", "retry_files_enabled = False"]
    if forks:
        lines.append(f"forks = {forks}")
    lines += ["", "[ssh_connection]"]
    if pipelining:
        lines.append("pipelining = True")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ a plain ssh loop


def ssh_argv(site: Any, host: str, command: str, sudo: bool) -> list[str]:
    """``ssh host cmd`` as the manual tutorial types it (OpenSSH client), with the site's key,
    known_hosts and strict checking; sudo as the engine applies it (not for root)."""
    h = site.host(host)
    known = Path(site.ssh.known_hosts or "~/.ssh/known_hosts").expanduser()
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-p", str(h.port)]
    if h.key:
        argv += ["-i", str(Path(h.key).expanduser()), "-o", "IdentitiesOnly=yes"]
    if sudo and h.user != "root":
        command = f"sudo -n -- sh -c {shlex.quote(command)}"
    return [*argv, f"{h.user}@{h.address}", command]
