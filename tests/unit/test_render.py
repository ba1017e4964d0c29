"""The files hubwizard writes to hosts: what each track renders, scoping, secrets, escaping.

Fast and pure: no host, no network. The files' real consumers (nginx, JupyterHub, bash...)
are exercised in tests/integration/test_consumers.py.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hubwizard.actions import backup
from hubwizard.core.config import parse_site
from hubwizard.core.errors import ConfigError
from hubwizard.core.render import (
    PATHS,
    Facts,
    GeneratedFile,
    derive_subnet,
    generated_files,
    render_all,
    template_context,
)
from hubwizard.core.templating import asset_names, environment, render_asset

DATA = Path(__file__).resolve().parents[1] / "data"
SITE_TEXT = (DATA / "render-site.toml").read_text(encoding="utf-8")
PROVIDERS = ["dummy", "github", "google", "cilogon", "globus", "generic"]
GENERIC_URLS = """
authorize_url = "https://id.example.org/auth"
token_url = "https://id.example.org/token"
userdata_url = "https://id.example.org/userinfo"
"""
HOSTILE = [
    "a; touch /tmp/hubwizard-pwned",
    "$(touch /tmp/hubwizard-pwned)",
    "`touch /tmp/hubwizard-pwned`",
    'it\'s "quoted"',
    "two\nlines",
    "x'; import os; os.system('touch /tmp/hubwizard-pwned'); '",
    "\\'\\\"",
    "{{ 7*7 }}",
]


def make_site(track: str = "swarm-mode", provider: str = "github", extra: str = "", **replace: str):
    text = SITE_TEXT.replace('track = "swarm-mode"', f'track = "{track}"')
    text = text.replace('provider = "github"', f'provider = "{provider}"')
    if provider == "dummy":
        text += "i_understand_anyone_can_log_in = true\n"
    if provider == "generic":
        text += GENERIC_URLS
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_site(text + extra)


def files_by_path(site, facts=None) -> dict[str, GeneratedFile]:
    facts = facts or Facts.offline(site)
    out = {}
    for f in generated_files(site, facts):
        out[f.path if f.host is None else f"{f.host}:{f.path}"] = f
    return out


# -- what each track renders -------------------------------------------------------------------


def test_swarm_mode_renders_every_file_it_needs():
    files = files_by_path(make_site())
    assert set(files) == {
        "/srv/hubwizard/hub/Dockerfile",
        "/srv/hubwizard/hub/requirements.txt",
        "/srv/hubwizard/hub/jupyterhub_config.py",
        "/srv/hubwizard/hubwizard-users.json",
        PATHS["daemon_json"],
        PATHS["nginx_site"],
        PATHS["nginx_site_http"],
        PATHS["certbot_deploy_hook"],
        PATHS["exports"],
        PATHS["ganesha_conf"],
        PATHS["set_quota"],
    }
    assert files[PATHS["set_quota"]].mode == 0o755
    assert files[PATHS["certbot_deploy_hook"]].mode == 0o755
    assert files[PATHS["exports"]].host_role == "nfs"
    assert files[PATHS["daemon_json"]].host_role == "all"
    for f in files.values():
        assert f.path.startswith("/")
        assert f.content.strip(), f.path
        assert f.description


def test_ganesha_grace_period_from_the_site_lease_never_longer():
    """[storage] grace_period: ganesha's default 90 s unless set; the lab's 10 s shortens the lease too."""
    default = files_by_path(make_site(extra='\n[storage]\nimplementation = "ganesha"\n'))[PATHS["ganesha_conf"]]
    assert "Grace_Period = 90;" in default.content and "Lease_Lifetime = 60;" in default.content
    short = files_by_path(make_site(extra='\n[storage]\nimplementation = "ganesha"\ngrace_period = 10\n'))
    assert "Grace_Period = 10;" in short[PATHS["ganesha_conf"]].content
    assert "Lease_Lifetime = 10;" in short[PATHS["ganesha_conf"]].content
    with pytest.raises(ConfigError, match="grace_period"):
        make_site(extra='\n[storage]\ngrace_period = 1\n')


def test_options_select_files():
    kernel = files_by_path(make_site(extra='\n[storage]\nimplementation = "kernel"\n'))
    assert PATHS["exports"] in kernel and PATHS["ganesha_conf"] not in kernel
    ganesha = files_by_path(make_site(extra='\n[storage]\nimplementation = "ganesha"\n'))
    assert PATHS["ganesha_conf"] in ganesha and PATHS["exports"] not in ganesha
    plain = make_site(
        extra='\n[https]\nenabled = false\n[storage]\nkind = "none"\n',
        **{"[quotas]\nenabled = true": "[quotas]\nenabled = false"},
    )
    files = files_by_path(plain)
    assert not {PATHS["nginx_site"], PATHS["exports"], PATHS["ganesha_conf"], PATHS["set_quota"]} & set(files)
    config = files["/srv/hubwizard/hub/jupyterhub_config.py"].content
    assert "pre_spawn_hook" not in config
    assert 'PUBLIC_URL = f"http://{DOMAIN}:8000"' in config


def test_classic_renders_its_files_with_one_docker_dropin_per_host():
    site = make_site("classic")
    files = files_by_path(site)
    assert {PATHS["auto_master"], PATHS["auto_home"], PATHS["exports"]} <= set(files)
    assert PATHS["ganesha_conf"] not in files and PATHS["set_quota"] not in files
    dropins = {k: f for k, f in files.items() if f.path == PATHS["docker_dropin"]}
    assert set(dropins) == {f"{h}:{PATHS['docker_dropin']}" for h in ("hub", "node1", "node2")}
    for name, ip in (("hub", "10.0.0.10"), ("node1", "10.0.0.11"), ("node2", "10.0.0.12")):
        f = dropins[f"{name}:{PATHS['docker_dropin']}"]
        exec_lines = [line for line in f.content.splitlines() if line.startswith("ExecStart=")]
        assert exec_lines[0] == "ExecStart="  # clears the packaged command
        assert f"-H tcp://{ip}:2376" in exec_lines[1]
        assert "0.0.0.0" not in f.content
        assert "-H fd://" in exec_lines[1]
    daemon = json.loads(files[PATHS["daemon_json"]].content)
    assert daemon["tlsverify"] is True
    assert "hosts" not in daemon  # dockerd refuses hosts both in daemon.json and as -H flags
    assert files[PATHS["auto_master"]].content.splitlines()[-1].split()[:2] == ["/home", PATHS["auto_home"]]
    assert files[PATHS["auto_home"]].content.splitlines()[-1] == "* -fstype=nfs,rw,hard,nosuid 10.0.0.10:/home/&"


def test_classic_plain_tcp_is_bound_to_the_internal_address_and_warned():
    site = make_site("classic", extra="\n[classic]\ndocker_tls = false\nallow_plain_tcp = true\n")
    files = files_by_path(site)
    dropin = files[f"node1:{PATHS['docker_dropin']}"].content
    assert "-H tcp://10.0.0.11:2375" in dropin and "WARNING" in dropin
    assert "tlsverify" not in json.loads(files[PATHS["daemon_json"]].content)
    config = files["/srv/hubwizard/hub/jupyterhub_config.py"].content
    assert "c.DockerSpawner.tls_config" not in config
    assert "WARNING: the manager is reached over plain TCP" in config


def test_every_asset_has_the_generated_by_header():
    for track in ("swarm-mode", "classic"):
        for f in generated_files(make_site(track), Facts.offline(make_site(track))):
            if f.path.endswith(".json"):
                continue  # JSON has no comments (dockerd refuses unknown keys)
            head = "\n".join(f.content.splitlines()[:4])
            assert "Generated by hubwizard for site" in head and "workshop" in head, f.path
            assert "Do not edit by hand" in f.content, f.path


def test_every_template_is_rendered_by_some_site():
    used = {"partials/auth.py.j2", "partials/services.py.j2", "partials/common.py.j2"}
    sites = [
        make_site(),
        make_site("classic"),
        make_site(extra='\n[storage]\nimplementation = "ganesha"\n'),
    ]
    rendered = set()
    for site in sites:
        ctx = template_context(site, Facts.offline(site))
        for name in asset_names():
            if name.startswith("partials/") or name == "classic/docker-tcp.conf.j2":
                continue
            if name.startswith("backup/"):
                continue  # rendered below by the backups step's own function (it adds the volume names)
            render_asset(name, ctx)  # every template renders with the context alone
            rendered.add(name)
    backups = make_site(extra='\n[backups]\nenabled = true\ntarget = "sftp:root@10.0.0.11:/srv/backups"\n')
    for path, text, _mode in backup.rendered_files(template_context(backups, Facts.offline(backups))):
        assert text.strip() and "{{ " not in text, path  # ({{.Mountpoint}} is Docker's Go format)
    rendered |= {asset for asset, _path, _mode in backup.FILES}
    assert rendered | used | {"classic/docker-tcp.conf.j2"} == set(asset_names())


# -- facts -------------------------------------------------------------------------------------


def test_offline_facts_from_the_site_file():
    facts = Facts.offline(make_site())
    assert facts.hub_ip == "10.0.0.10"
    assert facts.nfs_ip == "10.0.0.10"
    assert facts.subnet == "10.0.0.8/29"  # the narrowest network holding 10.0.0.10-12
    assert facts.ips == {"hub": "10.0.0.10", "node1": "10.0.0.11", "node2": "10.0.0.12"}


def test_offline_facts_without_internal_addresses_use_the_ssh_address():
    site = make_site(**{'internal_address = "10.0.0.11"\n': "", 'internal_address = "10.0.0.12"\n': ""})
    facts = Facts.offline(site)
    assert facts.ips["node1"] == "node1.internal"
    assert facts.subnet == "10.0.0.10/32"  # from the addresses that are IPs (the hub's only)
    explicit = make_site(**{'email = "admin@example.org"': 'email = "admin@example.org"\nsubnet = "10.0.0.0/16"'})
    assert Facts.offline(explicit).subnet == "10.0.0.0/16"


def test_derive_subnet():
    assert derive_subnet(["10.0.0.10", "10.0.0.200"]) == "10.0.0.0/24"
    assert derive_subnet(["10.0.0.10", "10.0.0.11"]) == "10.0.0.10/31"  # the narrowest, not a /24
    assert derive_subnet(["172.18.0.2", "172.18.1.3"]) == ""  # wider than /24: one line per host
    assert derive_subnet(["hub.example.org"]) == ""
    assert derive_subnet(["10.0.0.1", "192.168.0.1"]) == ""  # too wide to guess


# -- exports are scoped to the cluster -----------------------------------------------------------


def _export_clients(content: str) -> list[str]:
    lines = [line for line in content.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    return [re.sub(r"\(.*\)$", "", c) for c in lines[0].split()[1:]]


def test_exports_are_scoped_to_the_subnet_never_star():
    site = make_site()
    files = files_by_path(site)
    assert _export_clients(files[PATHS["exports"]].content) == ["10.0.0.8/29"]
    ganesha = files[PATHS["ganesha_conf"]].content
    assert re.search(r"^\s*Clients = 10\.0\.0\.8/29;$", ganesha, re.M)
    classic = files_by_path(make_site("classic"))[PATHS["exports"]].content
    assert _export_clients(classic) == ["10.0.0.8/29"]
    for content in (files[PATHS["exports"]].content, ganesha, classic):
        body = "\n".join(line for line in content.splitlines() if not line.lstrip().startswith("#"))
        assert "*" not in body


def test_exports_without_a_subnet_list_each_host():
    site = make_site()
    facts = Facts(hub_ip="10.0.0.10", subnet="", ips={"hub": "10.0.0.10", "node1": "10.0.1.5", "node2": "10.0.2.5"})
    files = files_by_path(site, facts)
    assert _export_clients(files[PATHS["exports"]].content) == ["10.0.0.10", "10.0.1.5", "10.0.2.5"]
    assert "Clients = 10.0.0.10, 10.0.1.5, 10.0.2.5;" in files[PATHS["ganesha_conf"]].content


def test_exports_add_hosts_outside_the_subnet():
    site = make_site()
    facts = Facts(
        hub_ip="10.0.0.10",
        subnet="10.0.0.10/32",
        ips={"hub": "10.0.0.10", "node1": "10.0.0.11", "node2": "10.0.0.12"},
        nfs_ip="10.0.0.10",
    )
    files = files_by_path(site, facts)
    assert _export_clients(files[PATHS["exports"]].content) == ["10.0.0.10/32", "10.0.0.11", "10.0.0.12"]


# -- secrets never reach a file --------------------------------------------------------------


def test_no_secret_in_any_rendered_file(monkeypatch, tmp_path):
    secret = "oauth-SECRET-value-9f8e7d"
    password = "registry-PASSWORD-1a2b3c"
    for name in ("HUBWIZARD_OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET", "HUBWIZARD_REGISTRY_PASSWORD"):
        monkeypatch.setenv(name, secret if "OAUTH" in name else password)
    extra = '\n[registry]\nurl = "registry.example.org"\nusername = "deploy"\n'
    for track in ("swarm-mode", "classic"):
        for provider in PROVIDERS:
            site = make_site(track, provider, extra=extra)
            render_all(site, Facts.offline(site), tmp_path / track / provider)
            for f in generated_files(site, Facts.offline(site)):
                assert secret not in f.content and password not in f.content
                if f.path.endswith(".py"):
                    # the only client_secret is the one read from the secret file
                    for line in f.content.splitlines():
                        if "client_secret =" in line:
                            assert "read_secret('oauth_client_secret', required=True)" in line
                    assert "api_token" not in f.content or "_check_token" in f.content
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written
    for p in written:
        text = p.read_text(encoding="utf-8")
        assert secret not in text and password not in text


def test_context_carries_no_secret_fields():
    ctx = template_context(make_site(), Facts.offline(make_site()))
    assert set(ctx) >= {"cfg", "hub_host", "nodes", "hosts", "facts"}
    assert not [k for k in ctx if "password" in k or k.endswith("secret")]
    assert [h.name for h in ctx["nodes"]] == ["node1", "node2"]


# -- injection: every value is escaped for the language it lands in ----------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_token_mode_refuses_hostile_values(value):
    with pytest.raises(ConfigError):
        environment("token").from_string("server_name {{ v }};").render(v=value)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_facts_cannot_reach_config_files(value):
    """Facts come from probes, not from the validated site file: token files refuse them."""
    site = make_site()
    facts = Facts(hub_ip=value, subnet=value, ips={"hub": value, "node1": value, "node2": value}, nfs_ip=value)
    ctx = template_context(site, facts)
    for name in ("exports.j2", "ganesha.conf.j2", "classic/auto.home.j2", "classic/exports.j2"):
        with pytest.raises(ConfigError):
            render_asset(name, ctx)


def _assignments(source: str) -> dict[str, object]:
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("value", HOSTILE)
def test_python_mode_keeps_hostile_values_as_string_literals(value):
    site = make_site()
    # bypass validation on purpose: the template must hold even if a check upstream is missed
    bad = site.model_copy(
        update={
            "site": site.site.model_copy(update={"domain": value}),
            "images": site.images.model_copy(update={"singleuser": value}),
        }
    )
    facts = Facts(hub_ip="10.0.0.10", subnet="10.0.0.0/24", ips=Facts.offline(site).ips, nfs_ip=value)
    source = render_asset("jupyterhub_config.py.j2", template_context(bad, facts))
    values = _assignments(source)
    assert values["DOMAIN"] == value
    assert values["NFS_IP"] == value
    tree = ast.parse(source)
    images = [
        n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Attribute)
        and n.targets[0].attr == "image"
        and isinstance(n.value, ast.Constant)
    ]
    assert images == [value]
    # and no call appeared that is not in the clean rendering
    clean = render_asset("jupyterhub_config.py.j2", template_context(site, Facts.offline(site)))
    assert _call_names(source) == _call_names(clean)


def _call_names(source: str) -> list[str]:
    return sorted(ast.dump(n.func) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call))


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_mode_makes_a_hostile_value_one_argument(value):
    line = environment("shell").from_string("STORAGE_ROOT={{ v }}").render(v=value)
    assert shlex.split(line) == [f"STORAGE_ROOT={value}"]
    site = make_site()
    bad = site.model_copy(update={"storage": site.storage.model_copy(update={"path": value})})
    script = render_asset("set_quota.sh.j2", template_context(bad, Facts.offline(site)))
    assign = "STORAGE_ROOT=" + script.split("\nSTORAGE_ROOT=", 1)[1].split("\nDEFAULT_SIZE=", 1)[0]
    assert shlex.split(assign) == [f"STORAGE_ROOT={value}"]


def test_every_provider_renders_its_authenticator():
    expected = {
        "dummy": '"jupyterhub.auth.DummyAuthenticator"',
        "github": "GitHubOAuthenticator",
        "google": "GoogleOAuthenticator",
        "cilogon": "CILogonOAuthenticator",
        "globus": "GlobusOAuthenticator",
        "generic": "GenericOAuthenticator",
    }
    for track in ("swarm-mode", "classic"):
        for provider in PROVIDERS:
            site = make_site(track, provider)
            config = files_by_path(site)["/srv/hubwizard/hub/jupyterhub_config.py"].content
            ast.parse(config)
            assert f"c.JupyterHub.authenticator_class = {expected[provider]}" in config
            if provider != "dummy":
                assert 'oauth_callback_url = f"{PUBLIC_URL}/hub/oauth_callback"' in config
                assert f"c.{expected[provider]}.client_id = 'Iv1.0123456789abcdef'" in config
            reqs = files_by_path(site)["/srv/hubwizard/hub/requirements.txt"].content
            assert ("oauthenticator" in reqs) == (provider != "dummy")


# -- details of the files ----------------------------------------------------------------------


def test_swarm_config_spawner_volume_and_quota_hook():
    config = files_by_path(make_site())["/srv/hubwizard/hub/jupyterhub_config.py"].content
    assert "from dockerspawner import SwarmSpawner" in config
    assert "c.SwarmSpawner.network_name = 'jupyterhub'" in config
    assert "c.SwarmSpawner.cpu_limit = 2.0" in config and "c.SwarmSpawner.mem_limit = '4G'" in config
    assert 'source=f"jupyterhub-user-{folder_name}"' in config
    assert '"device": f":{NFS_PATH}/{folder_name}"' in config
    assert "NFS_IP = '10.0.0.10'" in config
    assert "QUOTA = '5G'" in config and "SET_QUOTA = '/usr/local/sbin/hubwizard-set-quota'" in config
    assert "c.SwarmSpawner.extra_placement_spec" in config  # servers on the workers
    # an NFS server other than the hub: the hook cannot reach its filesystem, no quota call
    other = make_site(extra='\n[[hosts]]\nname = "store"\naddress = "10.0.0.20"\nrole = "nfs"\n[storage]\nserver = "store"\n')
    config = files_by_path(other)["/srv/hubwizard/hub/jupyterhub_config.py"].content
    assert "NFS_IP = '10.0.0.20'" in config and "set_quota" not in config
    compile(config, "jupyterhub_config.py", "exec")  # JupyterHub loads the hub-is-NFS-host variant in test_consumers
    assert "raise folder_failed(spawner.user.name, f\"could not be made on the NFS host" in config


def test_nginx_has_acme_redirect_websockets_and_the_cert_paths():
    files = files_by_path(make_site())
    https = files[PATHS["nginx_site"]].content
    assert "location /.well-known/acme-challenge/" in https and f"root {PATHS['acme_webroot']};" in https
    assert "return 301 https://$host$request_uri;" in https
    assert "ssl_certificate /etc/letsencrypt/live/hub.example.org/fullchain.pem;" in https
    assert "ssl_certificate_key /etc/letsencrypt/live/hub.example.org/privkey.pem;" in https
    assert "proxy_pass http://127.0.0.1:8000;" in https
    assert "proxy_set_header Upgrade $http_upgrade;" in https
    assert "map $http_upgrade $hubwizard_connection_upgrade" in https
    http = files[PATHS["nginx_site_http"]].content
    assert "ssl" not in http.replace("HTTPS", "") and "location /.well-known/acme-challenge/" in http
    assert "proxy_pass" not in http  # no login over plain HTTP


def test_daemon_json_lists_insecure_registries_only_when_any():
    site = make_site(extra='\n[registry]\nurl = "10.0.0.10:5001"\ninsecure = true\n')
    daemon = json.loads(files_by_path(site)[PATHS["daemon_json"]].content)
    assert daemon["insecure-registries"] == ["10.0.0.10:5000", "10.0.0.10:5001"]
    assert daemon["log-opts"]["max-size"]
    bare = make_site(**{'[docker]\ninsecure_registries = ["10.0.0.10:5000"]\n': ""})
    assert "insecure-registries" not in json.loads(files_by_path(bare)[PATHS["daemon_json"]].content)


def test_dockerfile_installs_requirements_and_copies_the_config():
    files = files_by_path(make_site())
    dockerfile = files["/srv/hubwizard/hub/Dockerfile"].content
    assert "FROM jupyterhub/jupyterhub:5" in dockerfile
    assert "COPY requirements.txt ca-certificates.cr[t] /tmp/hubwizard/" in dockerfile
    assert "PIP_CERT=/tmp/hubwizard/ca-certificates.crt" in dockerfile
    assert "COPY jupyterhub_config.py /srv/jupyterhub/jupyterhub_config.py" in dockerfile
    assert 'CMD ["jupyterhub", "-f", "/srv/jupyterhub/jupyterhub_config.py"]' in dockerfile
    reqs = files["/srv/hubwizard/hub/requirements.txt"].content.split()
    assert "dockerspawner>=13" in reqs and "jupyterhub-idle-culler>=1.2" in reqs


def test_render_all_writes_each_file_for_review(tmp_path):
    site = make_site("classic")
    written = render_all(site, Facts.offline(site), tmp_path)
    rel = {p.relative_to(tmp_path).as_posix() for p in written}
    assert "hub/srv/hubwizard/hub/jupyterhub_config.py" in rel
    assert "nodes/etc/auto.home" in rel
    assert "nodes@node1/etc/systemd/system/docker.service.d/hubwizard.conf" in rel
    hook = tmp_path / "hub" / PATHS["certbot_deploy_hook"].lstrip("/")
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
@pytest.mark.parametrize("track", ["swarm-mode", "classic"])
def test_rendered_configs_pass_pyflakes(tmp_path, track):
    """Undefined names or unused imports in a rendered config are template bugs."""
    paths = []
    for provider in PROVIDERS:
        site = make_site(track, provider)
        f = files_by_path(site)["/srv/hubwizard/hub/jupyterhub_config.py"]
        path = tmp_path / f"{provider}.py"
        path.write_text(f.content, encoding="utf-8")
        paths.append(str(path))
    result = subprocess.run(
        ["ruff", "check", "--isolated", "--select", "F,E9", *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
