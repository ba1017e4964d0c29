"""Hostile values in every field of the site file (issue 14's outside acceptance test).

Every text field of the site schema (found by walking hubwizard.core.config's models, so a field
added later is tested too, and checked against examples/site.toml) gets each hostile value:
shell syntax, every kind of line break, NUL, quotes, a Jinja expression, a %-format, 10,000
characters, a leading '-'. Each is either refused when the file is loaded (exit 2 at the CLI, the
message naming the field, the value's repr cut short, and why) or provably inert: it reaches no
generated file or command raw, and jupyterhub_config.py still parses. `hubwizard plan` and
`render` are run on some of these files as a user would: exit 2, one line, no traceback, and the
marker file the payloads would create never appears.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
import tomllib
import types
import typing
import uuid
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from pydantic import BaseModel

from hubwizard.core import sitefile
from hubwizard.core.config import Site, load_site
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import Facts, generated_files, template_context
from hubwizard.core.steps import load_steps
from hubwizard.core.templating import render_command

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "site.toml"
RUN = uuid.uuid4().hex[:12]
MARKER = Path(f"/tmp/PWN-{RUN}")  # what every payload tries to create

HOSTILE: dict[str, str] = {
    "command substitution": f"$(touch {MARKER})",
    "backticks": f"`touch {MARKER}`",
    "command separator": "; rm -rf /",
    "LF": "a\nb",
    "CRLF": "a\r\nb",
    "NUL": "a\x00b",
    "U+2028": "a\u2028b",
    "U+2029": "a\u2029b",
    "U+0085": "a\u0085b",
    "double quote": 'a"b',
    "single quote": "a'b",
    "backslash": "a\\b",
    "Jinja": "{{ 7*7 }}",
    "%-format": "%(x)s",
    "10000 characters": "a" * 10000,
    "option": f"-oProxyCommand=touch {MARKER}",
}
# the same payloads hidden behind a valid value: what a strict-looking check might let through
SUFFIXES = ("\n", "\r\n", "\u2028", "\u0085", "\x00", f";touch {MARKER}", f"$(touch {MARKER})", "'", '"', "\\",
            "{{ 7*7 }}", "%(x)s", "a" * 10000)

# Fields read by hubwizard alone on this machine (paramiko, the TLS check), never written into a
# host's file or command: a file name may hold quotes, '$' or '{' on Linux, so such values are
# accepted when the file exists (or, for known_hosts, may be created) and must then be inert.
LOCAL_ONLY = {"hosts[0].key", "ssh.config", "ssh.known_hosts", "https.acme_ca_bundle"}

FieldPath = tuple  # keys and list indexes into the site's data; "{key}"/"{value}" for a dict's items


# -- the fields, from the models ------------------------------------------------------------------


def _models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models(a)]


def _takes_str(tp: Any) -> bool:
    if tp is str:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (typing.Annotated, typing.Union, types.UnionType, list, tuple, set, frozenset):
        return any(_takes_str(a) for a in typing.get_args(tp))
    return False


def _dict_args(tp: Any) -> tuple[Any, Any] | None:
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)  # type: ignore[return-value]
    for a in typing.get_args(tp):
        found = _dict_args(a)
        if found:
            return found
    return None


def text_fields(model: type[BaseModel] = Site, prefix: FieldPath = ()) -> list[FieldPath]:
    """Every field of the site file that holds text (a list of text, a table of text) or a table of them."""
    out: list[FieldPath] = []
    for name, info in model.model_fields.items():
        tp = info.annotation
        sub = _models(tp)
        in_list = typing.get_origin(tp) is list or any(typing.get_origin(a) is list for a in typing.get_args(tp))
        if sub:
            out += text_fields(sub[0], (*prefix, name, 0) if in_list else (*prefix, name))
        elif _dict_args(tp):
            key, value = _dict_args(tp)  # type: ignore[misc]
            out += [(*prefix, name, "{key}")] if _takes_str(key) else []
            out += [(*prefix, name, "{value}")] if _takes_str(value) else []
        elif _takes_str(tp):
            out.append((*prefix, name))
    return out


def named(path: FieldPath) -> str:
    """How a message names the field: a table's items under the table's name (``images.profiles``)."""
    return label(path[:-1]) if isinstance(path[-1], str) and path[-1].startswith("{") else label(path)


def label(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f"[{part}]" if part.startswith("{") else
                                                           (f".{part}" if out else part))
    return out


# -- a valid site with every text field set -------------------------------------------------------

# A valid value for each field whose model default is not one (None, an empty list or table).
# A field missing here and without a text default fails test_every_field_has_a_valid_sample.
SAMPLES: dict[str, Any] = {
    "site.subnet": "10.0.0.0/24",
    "hosts[0].key": "{tmp}/id_ed25519",
    "hosts[0].jump": "node1",
    "hosts[0].internal_address": "10.0.0.10",
    "ssh.known_hosts": "{tmp}/known_hosts",
    "ssh.config": "{tmp}/ssh_config",
    "docker.insecure_registries": ["10.0.0.10:5000"],
    "storage.server": "hub",
    "quotas.device": "/dev/sdb1",
    "registry.url": "10.0.0.10:5000",
    "registry.username": "deploy",
    "images.hub": "10.0.0.10:5000/ws-hub:1",
    "images.profiles[{key}]": "Python 3.12",
    "images.profiles[{value}]": "jupyter/scipy-notebook:latest",
    "hub.admin_users": ["alice"],
    "hub.allowed_users": ["bob"],
    "hub.mem_guarantee": "1G",
    "https.acme_ca_bundle": "{tmp}/ca.pem",
    "oauth.provider": "generic",
    "oauth.client_id": "Iv1.abc",
    "oauth.authorize_url": "https://id.example.org/auth",
    "oauth.token_url": "https://id.example.org/token",
    "oauth.userdata_url": "https://id.example.org/me",
    "backups.target": "sftp:backup@10.0.0.20:/srv/backup",
    "backups.s3_access_key_id": "AKIA0123",
    "classic.replica_manager": "node1",
    # required fields without a default
    "site.name": "ws",
    "site.domain": "hub.example.org",
    "site.email": "admin@example.org",
    "hosts[0].name": "hub",
    "hosts[0].address": "10.0.0.10",
    "hosts[0].role": "hub",
}


def _default(path: FieldPath) -> Any:
    if isinstance(path[-1], str) and path[-1].startswith("{"):
        return None  # a table's key or value: SAMPLES only
    model: Any = Site
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        model = _models(model.model_fields[part].annotation)[0]
    default = model.model_fields[path[-1]].default
    return default if isinstance(default, str) or (isinstance(default, list) and default) else None


def sample(path: FieldPath, tmp: Path) -> Any:
    value = SAMPLES.get(label(path), _default(path))
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


def _set(data: dict[str, Any], path: FieldPath, value: Any) -> None:
    node: Any = data
    for part in path[:-2]:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    *_, parent, last = path
    if last == "{key}":
        node[parent] = {value: "jupyter/base-notebook:latest"}
    elif last == "{value}":
        node[parent] = {"Default": value}
    elif isinstance(last, int):
        node[parent] = [value]
    else:
        (node[parent] if isinstance(parent, int) else node.setdefault(parent, {}))[last] = value


def valid_site(tmp: Path) -> dict[str, Any]:
    """Every text field set to a valid value (the local files it names exist)."""
    for name in ("id_ed25519", "known_hosts", "ca.pem"):
        (tmp / name).write_text("x\n")
    (tmp / "ssh_config").write_text("Host *\n    ServerAliveInterval 5\n")
    data: dict[str, Any] = {"hosts": [{}, {"name": "node1", "address": "10.0.0.11", "role": "node"}]}
    for path in text_fields():
        value = sample(path, tmp)
        if value is not None:
            _set(data, path, value[0] if isinstance(value, list) and isinstance(path[-1], int) else value)
    data.setdefault("quotas", {})["enabled"] = True
    return data


def write(tmp: Path, data: dict[str, Any], name: str = "site.toml") -> Path:
    """The site as TOML written by tomlkit: any string, NUL and line breaks included, escaped as TOML."""
    path = tmp / name
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8")) == data  # the file says exactly the hostile value
    return path


# -- what "inert" means ----------------------------------------------------------------------------


def _strings(tree: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def commands(site: Site) -> list[str]:
    """Every command of every step for every host, rendered as the engine renders it."""
    facts = Facts.offline(site)
    out = []
    for step in load_steps(site.site.track):
        for host in site.targets(step.targets):
            ctx = template_context(site, facts) | {"host": host, "host_ip": host.address, "state": {}}
            for item in (*step.check, *step.apply, *step.verify):
                if item.run:
                    try:
                        out.append(render_command(item.run, ctx))
                    except ConfigError as exc:
                        assert "unknown value" in str(exc), str(exc)  # a run-time value (state): not the site's
    return out


def assert_inert(site: Site, value: str, where: str) -> None:
    """``value`` reaches no generated file or command raw; jupyterhub_config.py still parses."""
    for f in generated_files(site, Facts.offline(site)):
        if f.path.endswith(".py"):
            tree = ast.parse(f.content)  # a SyntaxError here is an injection
            if value in f.content:
                assert any(value in s for s in _strings(tree)), (where, f.path)
        else:
            assert value not in f.content, f"{where} = {value!r} written raw into {f.path}"
    for cmd in commands(site):
        if value in cmd:
            words = shlex.split(cmd)
            assert any(value in w and not w.startswith("-") for w in words), (where, cmd[:300])
    assert not MARKER.exists()


# -- the tests -------------------------------------------------------------------------------------


def test_every_field_has_a_valid_sample_and_the_valid_site_loads(tmp_path):
    missing = [label(p) for p in text_fields() if sample(p, tmp_path) is None]
    assert not missing, f"add a valid value for these new fields to SAMPLES: {missing}"
    site = load_site(write(tmp_path, valid_site(tmp_path)))
    assert site.oauth.provider == "generic" and site.hub.allowed_users == ["bob"]


def test_the_walk_covers_every_key_of_the_example_file():
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    walked = {label(p).replace("[0]", "") for p in text_fields()}
    for section, body in example.items():
        for table in body if isinstance(body, list) else [body]:
            for key, value in table.items():
                name = f"{section}.{key}"
                if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], str)):
                    assert name in walked, f"{name} is text in the example but not walked"
    assert {"site.domain", "hosts.address", "hosts.key", "oauth.client_id", "hub.admin_users",
            "docker.insecure_registries"} <= walked


def _cases() -> list[tuple[FieldPath, str, str]]:
    out = []
    for path in text_fields():
        out += [(path, name, value) for name, value in HOSTILE.items()]
        out += [(path, f"valid+{suffix[:12]!r}", suffix) for suffix in SUFFIXES]
    return out


@pytest.mark.parametrize("path", text_fields(), ids=label)
def test_every_field_refuses_or_keeps_inert_every_hostile_value(tmp_path, path):
    where = named(path)
    accepted = []
    for kind, payload in [(n, v) for n, v in HOSTILE.items()] + [(f"valid+{s[:12]!r}", s) for s in SUFFIXES]:
        valid = sample(path, tmp_path)
        is_list = isinstance(valid, list)  # a list of text: the hostile value as one of its items
        valid = valid[0] if is_list else valid
        evil = valid + payload if kind.startswith("valid+") else payload
        if kind == "option":
            evil = "-" + str(valid)  # also the field's own valid value behind a dash
        for value in ({evil, payload} if kind == "option" else {evil}):
            data = valid_site(tmp_path)
            _set(data, path, [value] if is_list else value)
            try:
                site = load_site(write(tmp_path, data))
            except ConfigError as exc:
                message = str(exc)
                assert where in message, (kind, message[:400])
                assert "valid list" not in message, (kind, message[:400])
                line = next(ln for ln in message.splitlines() if where in ln)
                shown = repr(value)[:60]
                assert shown in line, (kind, line[:300])  # the value, as repr (no raw control character)
                assert re.search(r": [A-Za-z]{2,}", line.split(shown, 1)[1]), (kind, line)  # and why, after the value
                assert len(line) < 600, (kind, len(line))
                assert not any(ch in message for ch in "\x00\r\u2028\u2029\u0085"), (kind, message[:200])
                continue
            accepted.append((kind, value))
            assert where in LOCAL_ONLY, f"{where} = {value[:80]!r} ({kind}) was accepted"
            assert_inert(site, value, where)
    if where not in LOCAL_ONLY:
        assert not accepted


@pytest.mark.parametrize(("field", "value", "why"), [
    ("site.domain", "hub", "needs a dot, e.g. hub.example.org"),
    ("site.domain", "203.0.113.10", "is an IP address"),
    ("site.domain", "hub.example.org.", "trailing dot"),
    ("hosts[0].address", "999.1.1.1", "not an IPv4 address"),
    ("hosts[0].address", "10.0.0", "not an IPv4 address"),
    ("hosts[0].address", "fe80::1%eth0", "scope id"),
    ("hosts[0].internal_address", "256.0.0.1", "not an IPv4 address"),
    ("registry.url", "300.1.1.1:5000", "not an IPv4 address"),
    ("site.email", "-oProxy@example.org", "not a valid e-mail"),
    ("oauth.client_id", "-x", "not a valid client id"),
    ("images.hub", "workshop-hub:latest", "Docker Hub needs USER/NAME"),
    ("images.hub", "docker.io/library/hub:1", "Docker Hub needs USER/NAME"),
])
def test_a_hand_written_file_gets_the_message_init_gives(tmp_path, field, value, why):
    """What init refuses as typed, load_site refuses from a file: the field, the value, the reason."""
    path = next(p for p in text_fields() if label(p) == field)
    data = valid_site(tmp_path)
    _set(data, path, value)
    with pytest.raises(ConfigError) as exc:
        load_site(write(tmp_path, data))
    assert f"{field} = {value!r}: " in str(exc.value) and why in str(exc.value)
    if field == "images.hub":  # init's words for the same answer
        q = next(x for x in sitefile.QUESTIONS if (x.section, x.key) == ("images", "hub"))
        assert why in (sitefile.answer_error(q, value, {}) or sitefile.hub_image_error(value) or "")
    if field.startswith(("site.", "hosts[0].address")):  # init asks these: the same words as typed
        section, key = ("hosts", "address") if field.startswith("hosts") else ("site", field.split(".")[1])
        assert why in (sitefile.field_error(section, key, value) or "")


@pytest.mark.parametrize("good", ["hub.example.org", "jupyter.uni-x.ac.uk", "a.b"])
def test_a_full_dns_name_is_a_domain(tmp_path, good):
    data = valid_site(tmp_path)
    data["site"]["domain"] = good
    assert load_site(write(tmp_path, data)).site.domain == good


@pytest.mark.parametrize("good", ["10.0.0.11", "2001:db8::1", "node-1.cluster.example", "hub", "203.0.113.255"])
def test_real_addresses_and_ssh_aliases_are_addresses(tmp_path, good):
    data = valid_site(tmp_path)
    data["hosts"][1]["address"] = good
    assert load_site(write(tmp_path, data)).hosts[1].address == good


def test_the_hub_image_follows_the_registry():
    q = next(x for x in sitefile.QUESTIONS if (x.section, x.key) == ("images", "hub"))
    hub = {"site": {"name": "ws"}}
    assert sitefile.derived_default(q, hub) == ""  # Docker Hub without a user: nothing pushable to offer
    assert sitefile.derived_default(q, hub | {"registry": {"username": "alice"}}) == "alice/ws-hub:latest"
    assert sitefile.derived_default(q, hub | {"registry": {"url": "10.0.0.10:5000"}}) == "10.0.0.10:5000/ws-hub:latest"
    assert sitefile.answer_error(q, "jupyterhub-hub:latest", hub) is None  # the wizard's untouched default: not written
    assert "Docker Hub needs USER/NAME" in sitefile.hub_image_error("jupyterhub-hub:latest")  # init refuses it typed
    assert "Docker Hub needs USER/NAME" in sitefile.answer_error(q, "library/hub", hub)
    assert sitefile.answer_error(q, "alice/ws-hub:latest", hub) is None
    assert sitefile.answer_error(q, "docker.io/alice/ws-hub", hub) is None
    assert sitefile.answer_error(q, "10.0.0.10:5000/ws-hub:1", hub | {"registry": {"url": "10.0.0.10:5000"}}) is None
    assert sitefile.answer_error(q, "", hub) == "is required"


def test_allowed_users_are_asked_with_a_real_login():
    q = next(x for x in sitefile.QUESTIONS if (x.section, x.key) == ("hub", "allowed_users"))
    assert sitefile.asked(q, {"oauth": {"provider": "github"}}) and not sitefile.asked(q, {"oauth": {"provider": "dummy"}})
    assert sitefile.answer_error(q, "", {}) is None  # empty: the admins only
    assert "not a valid user name" in sitefile.answer_error(q, "bob, $(id)", {})


# -- the CLI, as a user runs it --------------------------------------------------------------------


def local_hosts(data: dict[str, Any]) -> dict[str, Any]:
    """The hosts at 127.0.0.1:1 (nothing listens): a run past the input checks contacts no one else."""
    data["ssh"]["connect_timeout"] = 2
    for host in data["hosts"]:
        host.update(address="127.0.0.1", port=1)
        host.pop("jump", None)
        host.pop("internal_address", None)
    return data


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=str(cwd))


@pytest.mark.parametrize(("command", "field", "kind"), [  # each a Python start-up: a sample, both commands
    ("plan", "site.domain", "command substitution"), ("render", "hosts[0].address", "option"),
    ("plan", "hosts[0].user", "backticks"), ("render", "storage.path", "LF"), ("plan", "images.singleuser", "U+2028"),
    ("render", "oauth.client_id", "NUL"), ("plan", "hub.admin_users", "CRLF"), ("render", "site.email", "Jinja"),
    ("plan", "https.acme_server", "%-format"), ("render", "registry.url", "10000 characters"),
    ("plan", "images.profiles[{key}]", "U+0085"), ("render", "hosts[0].key", "LF"),
])
def test_the_cli_refuses_a_hostile_file_in_one_line(tmp_path, command, field, kind):
    path = next((p for p in text_fields() if label(p) == field), None)
    if path is None:
        pytest.skip(f"{field} is not a field of this site schema")
    data = local_hosts(valid_site(tmp_path))
    value = HOSTILE[kind]
    _set(data, path, [value] if isinstance(sample(path, tmp_path), list) else value)
    site = write(tmp_path, data)
    res = _cli(command, "-c", str(site), *(["-o", str(tmp_path / "out")] if command == "render" else []), cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr and "internal error" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines[:5]  # one clear line: the value's line breaks do not break it
    assert lines[0].startswith("hubwizard: bad input: ") and named(path) in lines[0] and repr(value)[:60] in lines[0]
    assert res.stdout == "" and not (tmp_path / "out").exists() and not MARKER.exists()


def test_a_hostile_but_legal_file_name_is_never_run(tmp_path):
    """known_hosts may be a new file, and '$(...)' is a legal file name: accepted, used as a name only.
    plan then fails to reach the (closed) port, and nothing ran the payload."""
    data = local_hosts(valid_site(tmp_path))
    pwned = tmp_path / f"PWN-{RUN}"  # the payload's file, relative to the working folder of plan
    data["ssh"]["known_hosts"] = str(tmp_path / f"$(touch {pwned.name});`touch {pwned.name}`")
    site = write(tmp_path, data)
    assert_inert(load_site(site), data["ssh"]["known_hosts"], "ssh.known_hosts")
    res = _cli("plan", "-c", str(site), cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not pwned.exists() and not MARKER.exists()


def test_an_ssh_config_that_is_not_one_is_bad_input_not_a_crash(tmp_path):
    """Found by the test above: an [ssh] config file paramiko cannot parse was an internal error (exit 1)."""
    data = local_hosts(valid_site(tmp_path))
    (tmp_path / "ssh_config").write_text("Host *\nx\n")  # a keyword without a value
    res = _cli("plan", "-c", str(write(tmp_path, data)), cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "is not an OpenSSH client config" in res.stderr and "[ssh] config" in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


def test_the_default_hub_image_still_loads(tmp_path):
    """Only an [images] hub the admin wrote is held to it: the sites that leave it out (tests, labs with
    their own) load as before; init always writes one that can be pushed."""
    data = valid_site(tmp_path)
    del data["images"]["hub"]
    assert load_site(write(tmp_path, data)).images.hub == "jupyterhub-hub:latest"
