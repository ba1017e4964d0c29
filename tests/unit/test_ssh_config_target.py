"""Where a host is reached, from the site file and ~/.ssh/config (no connection is opened):
what the site file says explicitly wins, even a value equal to the default; the config fills
the gaps; every ProxyJump hop is kept, in order, each with its own config."""

from __future__ import annotations

import pytest

from hubwizard.core.config import parse_site
from hubwizard.core.errors import ConfigError
from hubwizard.core.secrets import Secrets
from hubwizard.remote.connections import Connections, parse_hop
from tests.conftest import LAB_LOGIN

CONFIG = """\
Host web
  HostName 10.1.0.5
  Port 2222
  User alice
  IdentityFile ~/.ssh/web_key

Host deep
  HostName 10.9.0.9
  ProxyJump jump1,carol@jump2:2200

Host jump1
  HostName 192.0.2.1
  User bob
  IdentityFile ~/.ssh/jump_key
  ProxyJump outer

Host outer
  HostName 192.0.2.100
  Port 2022

Host jump2
  HostName 192.0.2.2
  ProxyJump ignored-for-a-later-hop

Host viacmd
  ProxyCommand ssh -W %h:%p bastion

Host viacmd2
  Port 2022
  User dave
  ProxyCommand ssh -W %h:%p -l %r bastion

Host loop
  ProxyJump loop

Host direct
  ProxyJump none
"""


def _conns(tmp_path, monkeypatch, host: str) -> Connections:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = tmp_path / "ssh_config"
    cfg.write_text(CONFIG)
    text = (f'[site]\nname = "t"\ndomain = "hub.example.org"\nemail = "a@example.org"\n\n'
            f'[ssh]\nknown_hosts = "{tmp_path}/kh"\nconfig = "{cfg}"\n\n{LAB_LOGIN}'
            f'[[hosts]]\nname = "hub"\nrole = "hub"\n{host}\n')
    return Connections(parse_site(text, tmp_path / "site.toml"), Secrets())


def _target(tmp_path, monkeypatch, host: str):
    c = _conns(tmp_path, monkeypatch, host)
    return c.target(c.site.host("hub"))


def test_config_fills_what_the_site_does_not_say(tmp_path, monkeypatch):
    t = _target(tmp_path, monkeypatch, 'address = "web"')
    assert (t.hostname, t.port, t.user) == ("10.1.0.5", 2222, "alice")
    assert t.key_files == (f"{tmp_path}/.ssh/web_key",)
    assert t.proxy_jump is None and t.proxy_command is None


def test_explicit_site_port_and_user_win_even_the_defaults(tmp_path, monkeypatch):
    t = _target(tmp_path, monkeypatch, 'address = "web"\nport = 22\nuser = "root"\nkey = "/k/site_key"')
    assert (t.hostname, t.port, t.user) == ("10.1.0.5", 22, "root")
    assert t.key_files == ("/k/site_key", f"{tmp_path}/.ssh/web_key")


def test_proxyjump_every_hop_in_order(tmp_path, monkeypatch):
    """deep <- jump2 (carol, 2200) <- jump1 (bob, its own IdentityFile) <- outer (jump1's own ProxyJump)."""
    t = _target(tmp_path, monkeypatch, 'address = "deep"')
    assert t.hostname == "10.9.0.9"
    last = t.proxy_jump
    assert last is not None and (last.name, last.hostname, last.port, last.user) == ("jump2", "192.0.2.2", 2200, "carol")
    first = last.proxy_jump
    assert first is not None and (first.hostname, first.port, first.user) == ("192.0.2.1", 22, "bob")
    assert first.key_files[0] == f"{tmp_path}/.ssh/jump_key"
    outer = first.proxy_jump
    assert outer is not None and (outer.hostname, outer.port) == ("192.0.2.100", 2022)
    assert outer.proxy_jump is None


def test_proxycommand_expanded(tmp_path, monkeypatch):
    t = _target(tmp_path, monkeypatch, 'address = "viacmd"')
    assert t.proxy_command == "ssh -W viacmd:22 bastion" and t.proxy_jump is None


def test_proxycommand_says_the_site_port_and_user(tmp_path, monkeypatch):
    """%p and %r of a ProxyCommand are what the connection uses: the site file's explicit values."""
    t = _target(tmp_path, monkeypatch, 'address = "viacmd2"\nport = 2200\nuser = "root"')
    assert (t.port, t.user) == (2200, "root")
    assert t.proxy_command == "ssh -W viacmd2:2200 -l root bastion"


def test_site_jump_wins_over_config(tmp_path, monkeypatch):
    c = _conns(tmp_path, monkeypatch, 'address = "viacmd"\n\n[[hosts]]\nname = "node1"\nrole = "node"\n'
                                      'address = "deep"\njump = "hub"')
    t = c.target(c.site.host("node1"))
    assert t.proxy_jump is not None and t.proxy_jump.name == "hub" and t.proxy_command is None


def test_proxyjump_none_and_loop(tmp_path, monkeypatch):
    assert _target(tmp_path, monkeypatch, 'address = "direct"').proxy_jump is None
    with pytest.raises(ConfigError) as err:
        _target(tmp_path, monkeypatch, 'address = "loop"')
    assert "loop" in err.value.message


@pytest.mark.parametrize("spec,parts", [
    ("bastion", (None, "bastion", None)),
    ("me@bastion:2200", ("me", "bastion", 2200)),
    ("ssh://me@bastion:2200", ("me", "bastion", 2200)),
    (" me@[2001:db8::1]:22 ", ("me", "2001:db8::1", 22)),
])
def test_parse_hop(spec, parts):
    assert parse_hop(spec) == parts


@pytest.mark.parametrize("spec", ["me@", "bastion:notaport", "bastion:70000"])
def test_parse_hop_refuses(spec):
    with pytest.raises(ConfigError):
        parse_hop(spec)
