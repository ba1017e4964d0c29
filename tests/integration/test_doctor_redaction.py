"""`hubwizard doctor` prints no secret, even when a failing check's output carries one (issue 12, Low).

Real sshd hosts on 127.0.0.1 (tests/sshd.py). A planted check reads a file on the host that
holds the site's registry password (a config someone left lying around) and fails with that
output as its detail; a second planted check crashes with the password in its exception. The
doctor's human report and its --json document are read as printed."""

from __future__ import annotations

import argparse
import json

import pytest

from hubwizard.core.redact import MASK
from hubwizard.doctor import checks as doctor_checks
from hubwizard.doctor import model as doctor
from hubwizard.doctor.context import Diagnosis, tail
from hubwizard.session import open_site
from tests.conftest import write_site

SECRET = "registry-pw-doctor-5e17"


def _leaky(ctx) -> list[Diagnosis]:
    host = ctx.site.hub_host
    res = ctx.run(host, f"cat {ctx.site.storage.path}/leaked.conf; exit 4")
    return [Diagnosis("planted-leak", host.name, False, f"leaked.conf says: {res.stdout.strip()}",
                      tail(res.output), "remove the file", (f"rm {ctx.site.storage.path}/leaked.conf",))]


def _crashing(ctx) -> list[Diagnosis]:
    raise RuntimeError(f"could not parse password={SECRET}")


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setattr(doctor_checks, "CHECKS", [
        doctor_checks.Check("planted-leak", "a check whose output holds a secret", ("swarm-mode",), _leaky),
        doctor_checks.Check("planted-crash", "a check that crashes", ("swarm-mode",), _crashing)])


@pytest.mark.parametrize("as_json", [False, True])
def test_doctor_output_masks_a_secret_in_a_failing_checks_output(tmp_path, ssh_env, planted, capsys, as_json):
    site = write_site(tmp_path, ssh_env, extra='\n[registry]\nurl = "10.0.0.10:5000"\nusername = "ci"\n')
    (tmp_path / "site.secrets.toml").write_text(f'registry_password = "{SECRET}"\n')
    (tmp_path / "site.secrets.toml").chmod(0o600)
    (tmp_path / "work" / "leaked.conf").write_text(f"password = {SECRET}\n")
    session = open_site(site, prompt=None)
    code = doctor.main(session, argparse.Namespace(json=as_json, fix=False, yes=False))
    out = capsys.readouterr()
    printed = out.out + out.err
    assert code == 1
    assert "planted-leak" in printed and "planted-crash" in printed  # both ran and were reported
    assert SECRET not in printed
    assert f"password = {MASK}" in printed and f"password={MASK}" in printed
    if as_json:
        diagnoses = {d["check"]: d for d in json.loads(out.out)["diagnoses"]}
        assert not diagnoses["planted-leak"]["ok"] and MASK in diagnoses["planted-leak"]["summary"]
