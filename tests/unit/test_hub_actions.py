"""Pure logic of the hub steps and of add-node/teardown: build-context digests, stream
progress, the hub service's arguments, the OAuth redirect check, the culler's command line,
certificate days, and the site-file edit that makes a spare active."""

from __future__ import annotations

import argparse
import ssl
from datetime import UTC, datetime

import pytest

from hubwizard.actions import hub_e2e, hub_image, hub_service, hub_web
from hubwizard.cli import scale
from hubwizard.core.config import parse_site
from hubwizard.core.render import Facts
from tests.unit.sitetext import LAB_LOGIN, host, site_text

SITE = (site_text(more_hosts=host("spare1", "10.0.0.12", "node", "spare = true  # rehearse add-node\n"))
        + '\n[registry]\nurl = "registry.example.org:5000"\nusername = "ci"\n'
        + '\n[images]\nhub = "registry.example.org:5000/demo/hub:1"\n' + LAB_LOGIN)


def site(extra: str = ""):
    """SITE plus ``extra``; an extra [oauth] replaces SITE's dummy login."""
    return parse_site(SITE.split("\n[oauth]")[0] + extra if "[oauth]" in extra else SITE + extra)


# -- build context -------------------------------------------------------------------


def test_build_context_holds_the_hub_files_and_the_ca_bundle():
    s = site()
    files = hub_image.build_files(s, Facts.offline(s), b"CA")
    assert set(files) == {"Dockerfile", "requirements.txt", "jupyterhub_config.py", "ca-certificates.crt"}
    assert b"FROM jupyterhub/jupyterhub:5" in files["Dockerfile"]
    assert "ca-certificates.crt" not in hub_image.build_files(s, Facts.offline(s), None)


def test_context_digest_changes_with_any_file_and_only_then():
    s = site()
    files = hub_image.build_files(s, Facts.offline(s), b"CA")
    same = hub_image.build_files(s, Facts.offline(s), b"CA")
    assert hub_image.context_digest(files) == hub_image.context_digest(same)
    other = hub_image.build_files(site("\n[hub]\nidle_timeout = 600\n"), Facts.offline(s), b"CA")
    assert hub_image.context_digest(other) != hub_image.context_digest(files)
    assert hub_image.context_digest({**files, "ca-certificates.crt": b"CA2"}) != hub_image.context_digest(files)


def test_context_tar_is_reproducible():
    files = {"b": b"2", "a": b"1"}
    assert hub_image.context_tar(files).getvalue() == hub_image.context_tar(dict(reversed(files.items()))).getvalue()


# -- pull / push streams ---------------------------------------------------------------

# Chunks in the shape the Docker API streams for a pull (as seen from engine 20.10 in the lab),
# written by hand for one layer.
PULL_STREAM = [
    {"status": "Pulling from lab/singleuser", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "5d0e1c1c2f13"},
    {"status": "Downloading", "progressDetail": {"current": 1048576, "total": 4194304},
     "progress": "[====>  ]", "id": "5d0e1c1c2f13"},
    {"status": "Downloading", "progressDetail": {"current": 4194304, "total": 4194304}, "id": "5d0e1c1c2f13"},
    {"status": "Extracting", "progressDetail": {"current": 2097152, "total": 4194304}, "id": "5d0e1c1c2f13"},
    {"status": "Pull complete", "progressDetail": {}, "id": "5d0e1c1c2f13"},
    {"status": "Digest: sha256:" + "a" * 64},
    {"status": "Status: Downloaded newer image for 172.23.0.2:5000/lab/singleuser:latest"},
]


def test_layer_progress_sums_bytes_per_layer():
    layers = hub_image.LayerProgress.empty()
    for chunk in PULL_STREAM[:4]:
        layers.feed(chunk)
    assert layers.mib == (4.0, 4.0)
    for chunk in PULL_STREAM[4:]:
        layers.feed(chunk)
    assert layers.mib == (4.0, 4.0)  # "Pull complete" counts the layer as done


class _Ctx:
    """Just what stream_errors uses of a StepContext: the step, host and emit."""

    step = "prepull"

    class host:  # noqa: N801 - stands in for a Host
        name = "node1"

    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)

    def progress(self, label, done, total=None):
        self.events.append(("progress", label, done, total))


def test_stream_errors_reports_the_error_and_progress():
    ctx = _Ctx()
    assert hub_image.stream_errors(PULL_STREAM, ctx, "pull x") == ""
    assert any(isinstance(e, tuple) and e[0] == "progress" for e in ctx.events)
    err = hub_image.stream_errors(
        [{"errorDetail": {"message": "unauthorized"}, "error": "unauthorized: authentication required"}], _Ctx(), "push x")
    assert "unauthorized" in err


# -- hub service -----------------------------------------------------------------------


def test_service_args_keep_secrets_out_and_port_off_ingress():
    s = site()
    args = hub_service.service_args(s, "reg/hub:1@sha256:" + "b" * 64, {"hubwizard_api_token": "TOKENVALUE"}, True)
    text = " ".join(args)
    assert "TOKENVALUE" not in text
    assert "--endpoint-mode dnsrr" in text
    assert "mode=host,target=8000,published=8000" in text
    assert "node.role==manager" in args
    assert f"source={hub_service.secret_name('hubwizard_api_token', 'TOKENVALUE')},target=hubwizard_api_token" in text
    assert "HUBWIZARD_NFS_VOLUMES=1" in args
    assert "type=bind,source=/var/nfs,target=/var/nfs" in args  # the hub is the NFS server here
    assert args[-1].endswith("b" * 64)


def test_spec_digest_follows_image_and_secret_values():
    s = site()
    a = hub_service.service_args(s, "img@sha256:1", {"t": "one"}, False)
    assert hub_service.spec_digest(a) == hub_service.spec_digest(hub_service.service_args(s, "img@sha256:1", {"t": "one"}, False))
    assert hub_service.spec_digest(a) != hub_service.spec_digest(hub_service.service_args(s, "img@sha256:2", {"t": "one"}, False))
    assert hub_service.spec_digest(a) != hub_service.spec_digest(hub_service.service_args(s, "img@sha256:1", {"t": "two"}, False))


def test_secret_name_is_stable_and_does_not_carry_the_value():
    name = hub_service.secret_name("oauth_client_secret", "s3cret-value")
    assert name == hub_service.secret_name("oauth_client_secret", "s3cret-value")
    assert name.startswith("oauth_client_secret-") and "s3cret" not in name


def test_port_guard_drops_forwarded_connections_to_8000():
    assert "DOCKER-USER" in hub_service.PORT_GUARD and "--ctorigdstport 8000 -j DROP" in hub_service.PORT_GUARD
    assert "WantedBy=docker.service" in hub_service.PORT_GUARD


# -- OAuth redirect -----------------------------------------------------------------------

GITHUB = """
[oauth]
provider = "github"
client_id = "Iv1.fakeclientid"
[hub]
admin_users = ["alice"]
"""

# The Location header GitHubOAuthenticator (oauthenticator 17) sends for GET /hub/oauth_login.
LOCATION = ("https://github.com/login/oauth/authorize?response_type=code&"
            "redirect_uri=https%3A%2F%2Fhub.example.org%2Fhub%2Foauth_callback&client_id=Iv1.fakeclientid&"
            "state=eyJzdGF0ZV9pZCI6ICJhYmMiLCAibmV4dF91cmwiOiAiIn0")


def test_redirect_to_github_with_client_id_and_callback_passes():
    ok, message = hub_web.check_redirect(LOCATION, site(GITHUB))
    assert ok, message
    assert "Iv1.fakeclientid" in message


@pytest.mark.parametrize(
    ("location", "complaint"),
    [
        (LOCATION.replace("Iv1.fakeclientid", "other"), "client_id"),
        (LOCATION.replace("hub.example.org", "evil.example.org"), "redirect_uri"),
        (LOCATION.replace("github.com", "example.com"), "goes to"),
    ],
)
def test_redirect_problems_are_named(location, complaint):
    ok, message = hub_web.check_redirect(location, site(GITHUB))
    assert not ok and complaint in message


# -- culler, certificates -------------------------------------------------------------------


def test_culler_timeout_from_its_command_line():
    lines = "/opt/jupyterhub/bin/python3 -m jupyterhub_idle_culler --timeout=3600\n"
    assert hub_e2e.culler_timeout(lines) == 3600
    assert hub_e2e.culler_timeout("python3 -m something_else") is None


def test_days_left_of_a_not_after():
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert hub_web.days_left("Feb 20 00:00:00 2027 GMT", now) == 90
    with pytest.raises(ValueError):
        ssl.cert_time_to_seconds("not a date")


def test_trust_roots_finds_the_lab_pebble_root(tmp_path):
    (tmp_path / "pebble-cert.pem").write_text("x")
    s = site(f'\n[https]\nacme_ca_bundle = "{tmp_path / "pebble-cert.pem"}"\n')
    assert hub_web.trust_roots(s) == []
    (tmp_path / "pebble-root.pem").write_text("x")
    assert hub_web.trust_roots(s) == [tmp_path / "pebble-root.pem"]
    assert hub_web.trust_roots(site()) == []


# -- add-node / teardown ----------------------------------------------------------------------


def test_activate_spare_edits_only_that_host():
    new = scale.activate_spare(SITE, "spare1")
    assert "spare = true" not in new
    s = parse_site(new)
    assert [h.name for h in s.nodes] == ["node1", "spare1"]
    assert new.replace("spare = true  # rehearse add-node\n", "") == new  # nothing else moved
    assert SITE.replace("spare = true  # rehearse add-node\n", "") == new
    assert scale.activate_spare(SITE, "node1") == SITE


def test_teardown_refuses_without_tty_and_yes(tmp_path, capsys):
    from hubwizard.session import open_site

    path = tmp_path / "demo.toml"
    path.write_text(SITE)
    session = open_site(path, prompt=None)
    args = argparse.Namespace(yes=False, purge_data=False, accept_new_host_keys=False)
    assert scale.teardown(session, args) == 2
    assert "--yes" in capsys.readouterr().err


def test_teardown_keeps_data_unless_purged():
    s = site()
    undo = " ".join(u.act for u in scale.hub_undo(s))
    assert "rm -rf" not in undo.replace("rm -rf /srv/hubwizard/hub", "")
    assert "docker volume rm" not in undo
    on_hub, on_nfs = scale.purge_undo(s)
    assert "docker volume rm jupyterhub-data" in on_hub[0].act
    assert on_nfs[0].act.startswith("find /var/nfs -mindepth 1")


def test_user_service_limits_follow_the_site():
    s = site("\n[hub]\ncpu_limit = 0.5\nmem_limit = \"512M\"\n")
    assert hub_e2e.size_bytes("2G") == 2 * 2**30 and hub_e2e.size_bytes("1.5K") == 1536
    good = hub_e2e.UserTask("jupyter-x", "node1", "worker", 0.5, 512 * 2**20)
    assert hub_e2e.limits_problem(good, s) is None
    bad = hub_e2e.UserTask("jupyter-x", "node1", "worker", None, None)
    assert "cpu_limit=0.5" in hub_e2e.limits_problem(bad, s)


def test_teardown_with_purge_does_not_claim_to_keep_the_database():
    kept = [u.what for u in scale.hub_undo(site()) if u.what.startswith("kept")]
    assert kept and not [u for u in scale.hub_undo(site(), purge=True) if u.what.startswith("kept")]
