"""SSH as an admin has it set up (issue 14, item 9, and item 6's twice-asked host key), against
real sshd servers on 127.0.0.1, a real ssh-agent and keys locked with a passphrase by ssh-keygen.

- A locked key file in ~/.ssh does not stand in the way of ssh-agent; its passphrase is asked
  only when nothing else works (on a terminal), else the error says `ssh-add KEY`.
- ~/.ssh/config: every hop of ``ProxyJump a,b``, ``ProxyCommand``.
- A host key is confirmed once, however many connections meet it at once (the TUI probes every
  host in its own worker; the nodes reach the hub as their jump host).

HOME, SSH_AUTH_SOCK and the ssh config point into the test's temp dir, never at the real ~/.ssh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubwizard.core.config import load_site
from hubwizard.core.errors import UnreachableError
from hubwizard.core.secrets import Secrets
from hubwizard.remote.connections import Connections
from tests.conftest import BASIC_RECIPES, LAB_LOGIN
from tests.sshd import Sshd, keygen, start_sshd

RAW = ("SSHException", "PasswordRequired", "EOFError", "Errno", "paramiko", "Traceback")
PASSPHRASE = "correct horse"

pytestmark = pytest.mark.skipif(not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists(),
                                reason="openssh-server is not installed")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOME of the test's own, with an empty ~/.ssh and no ssh-agent."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return h


@pytest.fixture
def servers(tmp_path) -> Iterator[list[Sshd]]:
    started: list[Sshd] = []
    yield started
    for s in started:
        s.stop()


def _sshd(servers: list[Sshd], tmp_path: Path, extra: str = "") -> Sshd:
    s = start_sshd(tmp_path, tmp_path / "authorized_keys", extra_config=extra)
    servers.append(s)
    return s


def _authorize(tmp_path: Path, key: Path) -> None:
    with (tmp_path / "authorized_keys").open("a") as fh:
        fh.write(Path(f"{key}.pub").read_text())


def _locked_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(path)], check=True)
    return path


def _site(tmp_path: Path, hosts: list[dict], ssh_config: str = "") -> Path:
    """A site file of ``hosts`` (name, address and whatever else each says), an empty known_hosts."""
    (tmp_path / "ssh_config").write_text(ssh_config)
    (tmp_path / "known_hosts").write_text("")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    body = ""
    for h in hosts:
        body += "[[hosts]]\n" + "".join(f"{k} = {v}\n" if isinstance(v, int) else f'{k} = "{v}"\n'
                                         for k, v in h.items()) + "\n"
    site = tmp_path / "site.toml"
    site.write_text(
        '[site]\nname = "t"\ndomain = "hub.example.org"\nemail = "a@example.org"\nsubnet = "127.0.0.0/8"\n\n'
        f'[ssh]\nknown_hosts = "{tmp_path}/known_hosts"\nconfig = "{tmp_path}/ssh_config"\n\n'
        f'[storage]\npath = "{work}"\n\n{LAB_LOGIN}{body}'
    )
    return site


def _host(name: str, s: Sshd, role: str = "node", **extra) -> dict:
    return {"name": name, "address": "127.0.0.1", "port": s.port, "role": role, "user": "root",
            "internal_address": "127.0.0.1", **extra}


class Asked:
    """A confirm() that says yes (or no) like a person would: after a moment; counts questions per host."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.hosts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, host: str, fingerprint: str) -> bool:
        with self._lock:
            self.hosts[host] += 1
        time.sleep(0.3)  # a person reads the fingerprint: the other connections meet the key meanwhile
        return self.answer


def _probe_all(site_path: Path, asked: Asked, names: list[str]) -> dict[str, str]:
    """As the TUI's "probe all": every host in its own worker, each with its own Connections."""
    site = load_site(site_path)
    outcome: dict[str, str] = {}

    def probe(name: str) -> None:
        with Connections(site, Secrets(), confirm=asked) as conns:
            try:
                outcome[name] = conns.get(name).run("echo ok").stdout.strip()
            except UnreachableError as exc:
                outcome[name] = exc.message

    threads = [threading.Thread(target=probe, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcome


def _id(s: Sshd) -> str:
    return f"[127.0.0.1]:{s.port}"


# --------------------------------------------------------------------------- host keys


def test_host_key_confirmed_once_behind_jump(tmp_path, home, servers):
    """1+2 behind the hub as jump host: the hub's key is met by three connections at once (its own
    probe and both nodes' tunnels); each host's key is asked once, and known_hosts gets three lines."""
    key = keygen(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    hub, n1, n2 = (_sshd(servers, tmp_path) for _ in range(3))
    site = _site(tmp_path, [_host("hub", hub, "hub"), _host("node1", n1, jump="hub"),
                            _host("node2", n2, jump="hub")])
    asked = Asked()
    assert _probe_all(site, asked, ["hub", "node1", "node2"]) == {"hub": "ok", "node1": "ok", "node2": "ok"}
    assert asked.hosts == {_id(hub): 1, _id(n1): 1, _id(n2): 1}
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == 3
    # the engine's way (one Connections, hosts in parallel) asks nothing more now
    again = Asked()
    assert _probe_all(site, again, ["node1", "node2", "hub"]) == {"hub": "ok", "node1": "ok", "node2": "ok"}
    assert again.hosts == {}


def test_host_key_refused_once_behind_jump(tmp_path, home, servers):
    """The admin says no to the hub's key: asked once, not once per node; nothing is written."""
    key = keygen(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    hub, n1, n2 = (_sshd(servers, tmp_path) for _ in range(3))
    site = _site(tmp_path, [_host("hub", hub, "hub"), _host("node1", n1, jump="hub"),
                            _host("node2", n2, jump="hub")])
    asked = Asked(answer=False)
    outcome = _probe_all(site, asked, ["hub", "node1", "node2"])
    assert asked.hosts == {_id(hub): 1}
    assert all("is not in" in outcome[n] for n in ("hub", "node1", "node2")), outcome
    assert (tmp_path / "known_hosts").read_text() == ""


# --------------------------------------------------------------------------- keys and ssh-agent


@pytest.fixture
def agent(tmp_path) -> Iterator[str]:
    """A real ssh-agent on a socket in the temp dir; killed by its pid at the end."""
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield sock
    proc.terminate()
    proc.wait(5)


def _ssh_add(agent_sock: str, key: Path, tmp_path: Path) -> None:
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_AUTH_SOCK": agent_sock, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
           "DISPLAY": ":0"}
    subprocess.run(["ssh-add", str(key)], env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)


def test_locked_default_key_does_not_block_agent(tmp_path, home, servers, agent, monkeypatch):
    """~/.ssh/id_ed25519 needs a passphrase, the agent holds it: the login uses the agent, nobody is asked."""
    key = _locked_key(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    _ssh_add(agent, key, tmp_path)
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    s = _sshd(servers, tmp_path)
    site = load_site(_site(tmp_path, [_host("hub", s, "hub")]))
    prompts: list[str] = []
    with Connections(site, Secrets(prompt=lambda q: prompts.append(q) or ""), accept_new_host_keys=True) as conns:
        assert conns.get("hub").run("echo ok").stdout.strip() == "ok"
    assert prompts == []


def test_locked_key_beside_another_agent_key(tmp_path, home, servers, agent, monkeypatch):
    """The site names a locked key the agent does not hold, the agent holds another accepted key: it logs in."""
    locked = _locked_key(tmp_path / "locked")
    other = keygen(tmp_path / "other")
    _authorize(tmp_path, other)
    _ssh_add(agent, other, tmp_path)
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    s = _sshd(servers, tmp_path)
    site = load_site(_site(tmp_path, [_host("hub", s, "hub", key=str(locked))]))
    prompts: list[str] = []
    with Connections(site, Secrets(prompt=lambda q: prompts.append(q) or ""), accept_new_host_keys=True) as conns:
        assert conns.get("hub").run("echo ok").ok
    assert prompts == []


def test_locked_key_passphrase_asked_once_when_nothing_else_works(tmp_path, home, servers):
    """No agent: the passphrase is asked, once for two hosts, and both log in."""
    key = _locked_key(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    a, b = _sshd(servers, tmp_path), _sshd(servers, tmp_path)
    site = load_site(_site(tmp_path, [_host("hub", a, "hub"), _host("node1", b)]))
    prompts: list[str] = []
    with Connections(site, Secrets(prompt=lambda q: prompts.append(q) or PASSPHRASE),
                     accept_new_host_keys=True) as conns:
        assert conns.get("hub").run("true").ok and conns.get("node1").run("true").ok
    assert len(prompts) == 1 and "~/.ssh/id_ed25519" in prompts[0], prompts


def test_passphrase_typed_after_sshd_gave_up_logs_in_again(tmp_path, home, servers):
    """The admin types slower than sshd's LoginGraceTime: the server has closed the login, a new one
    is opened with the unlocked key, and nobody is asked again."""
    key = _locked_key(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    s = _sshd(servers, tmp_path, "LoginGraceTime 1\n")
    site = load_site(_site(tmp_path, [_host("hub", s, "hub")]))
    prompts: list[str] = []

    def slow(question: str) -> str:
        prompts.append(question)
        time.sleep(3)  # past LoginGraceTime 1: sshd closes the half-done login
        return PASSPHRASE

    with Connections(site, Secrets(prompt=slow), accept_new_host_keys=True) as conns:
        assert conns.get("hub").run("echo ok").stdout.strip() == "ok"
    assert len(prompts) == 1


def test_wrong_passphrase_said_so(tmp_path, home, servers):
    key = _locked_key(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    s = _sshd(servers, tmp_path)
    site = load_site(_site(tmp_path, [_host("hub", s, "hub")]))
    wrong = Secrets(prompt=lambda q: "wrong")
    with Connections(site, wrong, accept_new_host_keys=True) as conns, pytest.raises(UnreachableError) as err:
        conns.get("hub")
    assert "wrong passphrase" in err.value.message and "id_ed25519" in err.value.message
    assert "ssh-add" in (err.value.fix or "")
    assert not any(w in str(err.value) for w in RAW), str(err.value)


def _hw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args, "--recipes", str(BASIC_RECIPES)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    return {**env, "HOME": str(home)}


def test_locked_key_without_terminal_names_host_key_and_fix(tmp_path, home, servers):
    """The CLI with no terminal and no agent: exit 3, the host, the key file and `ssh-add KEY`."""
    key = _locked_key(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    s = _sshd(servers, tmp_path)
    site = _site(tmp_path, [_host("hub", s, "hub")])
    res = _hw("plan", "-c", str(site), "--accept-new-host-keys", env=_env(home))
    out = res.stdout + res.stderr
    assert res.returncode == 3, out
    assert "hub" in out and "id_ed25519" in out and "needs a passphrase" in out
    assert "ssh-add ~/.ssh/id_ed25519" in out
    assert not any(w in out for w in RAW), out


def test_locked_key_passphrase_asked_on_terminal(tmp_path, home, servers):
    """The CLI on a terminal asks the passphrase (not echoed) and goes on."""
    pexpect = pytest.importorskip("pexpect")
    key = _locked_key(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    s = _sshd(servers, tmp_path)
    site = _site(tmp_path, [_host("hub", s, "hub")])
    child = pexpect.spawn(sys.executable, ["-m", "hubwizard.cli.main", "plan", "-c", str(site),
                                           "--accept-new-host-keys", "--recipes", str(BASIC_RECIPES)],
                          env=_env(home), encoding="utf-8", timeout=90)
    child.expect("passphrase of the SSH key ~/.ssh/id_ed25519 \\(to log in to hub\\)")
    child.sendline(PASSPHRASE)
    rest = child.read()
    child.close()
    assert child.exitstatus == 0, rest
    assert PASSPHRASE not in rest and "passphrase of" not in rest  # not echoed, asked once


# --------------------------------------------------------------------------- ~/.ssh/config


def test_proxyjump_chains_every_hop(tmp_path, home, servers):
    """``ProxyJump a,b``: a may forward only to b, b only to the target; the login works, so both hops
    were used in that order (keeping only the first hop, a refuses to forward to the target)."""
    key = keygen(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    target = _sshd(servers, tmp_path)
    b = _sshd(servers, tmp_path, f"PermitOpen 127.0.0.1:{target.port}\n")
    a = _sshd(servers, tmp_path, f"PermitOpen 127.0.0.1:{b.port}\n")
    config = (f"Host inner\n  HostName 127.0.0.1\n  Port {target.port}\n  User root\n"
              f"  ProxyJump root@127.0.0.1:{a.port},hop-b\n\n"
              f"Host hop-b\n  HostName 127.0.0.1\n  Port {b.port}\n  User root\n")
    site = load_site(_site(tmp_path, [{"name": "hub", "address": "inner", "role": "hub"}], config))
    asked = Asked()
    with Connections(site, Secrets(), confirm=asked) as conns:
        assert conns.get("hub").run("echo ok").stdout.strip() == "ok"
    assert asked.hosts == {_id(a): 1, _id(b): 1, _id(target): 1}


def test_proxyjump_hop_shared_by_hosts(tmp_path, home, servers):
    """Two site hosts behind one ProxyJump bastion: one connection to it, its key asked once."""
    key = keygen(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    bastion = _sshd(servers, tmp_path)
    n1, n2 = _sshd(servers, tmp_path), _sshd(servers, tmp_path)
    config = (f"Host n1\n  HostName 127.0.0.1\n  Port {n1.port}\n\nHost n2\n  HostName 127.0.0.1\n  Port {n2.port}\n\n"
              f"Host n1 n2\n  ProxyJump root@127.0.0.1:{bastion.port}\n")
    site = load_site(_site(tmp_path, [{"name": "hub", "address": "n1", "role": "hub"},
                                      {"name": "node1", "address": "n2", "role": "node"}], config))
    asked = Asked()
    with Connections(site, Secrets(), confirm=asked) as conns:
        got = [threading.Thread(target=lambda n=n: conns.get(n).run("true")) for n in ("hub", "node1")]
        for t in got:
            t.start()
        for t in got:
            t.join(60)
        assert conns.get("hub").run("true").ok and conns.get("node1").run("true").ok
        assert len(conns._hops) == 1  # noqa: SLF001 - the one shared bastion connection
    assert asked.hosts == {_id(bastion): 1, _id(n1): 1, _id(n2): 1}


def test_proxycommand_is_run(tmp_path, home, servers):
    """``ProxyCommand`` through a shell, as ssh runs it: here `ssh -W` through a bastion that may
    forward only to the target."""
    key = keygen(home / ".ssh" / "id_ed25519")
    _authorize(tmp_path, key)
    target = _sshd(servers, tmp_path)
    bastion = _sshd(servers, tmp_path, f"PermitOpen 127.0.0.1:{target.port}\n")
    mark = tmp_path / "proxy-ran"
    ssh = (f"ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i {key} "
           f"-p {bastion.port} -W %h:%p root@127.0.0.1")
    config = f"Host inner\n  HostName 127.0.0.1\n  Port {target.port}\n  ProxyCommand sh -c 'touch {mark}; exec {ssh}'\n"
    site = load_site(_site(tmp_path, [{"name": "hub", "address": "inner", "role": "hub", "user": "root"}], config))
    asked = Asked()
    with Connections(site, Secrets(), confirm=asked) as conns:
        t = conns.get("hub")
        assert t.run("echo ok").stdout.strip() == "ok"
        proc = t._proxy.proc  # type: ignore[attr-defined]  # noqa: SLF001
    assert mark.exists() and asked.hosts == {_id(target): 1}
    assert proc.poll() is not None  # closing the connection ended the command


def test_failing_proxycommand_clear_message(tmp_path, home, servers):
    config = "Host inner\n  HostName 127.0.0.1\n  ProxyCommand sh -c 'echo \"bastion: no route to inner\" >&2; exit 7'\n"
    site = load_site(_site(tmp_path, [{"name": "hub", "address": "inner", "role": "hub"}], config))
    with Connections(site, Secrets(), accept_new_host_keys=True) as conns, pytest.raises(UnreachableError) as err:
        conns.get("hub")
    msg = err.value.message
    assert msg.startswith("hub: ") and "ProxyCommand" in msg and "exited with code 7" in msg
    assert "bastion: no route to inner" in msg and "ProxyCommand none" in (err.value.fix or "")
    assert not any(w in str(err.value) for w in RAW), str(err.value)
