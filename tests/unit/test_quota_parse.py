"""The xfs_quota report parser, on real reports captured where quotas work (tests/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubwizard.actions.quota import parse_report, parse_size, project_name

DATA = Path(__file__).resolve().parent.parent / "data"


def _read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_docker_host_projects_by_id():
    report = parse_report(_read("xfs_quota_report_docker_ids.txt"))
    assert (report.mount, report.device) == ("/data", "/dev/vdb")
    assert len(report.rows) == 19
    first = report.rows[0]
    assert first.name == "#0" and first.project_id == 0
    assert first.used == 7394256 * 1024 and first.hard == 0
    nine = report.get("#9")
    assert nine is not None
    assert nine.used == 10568 * 1024
    assert nine.soft == nine.hard == 52428800 * 1024  # 50 GiB
    assert nine.grace == "--------" and nine.inodes_hard is None


def test_mail_quoted_report_with_huge_numbers():
    report = parse_report(_read("xfs_quota_report_p_linux_xfs.txt"))
    assert report.mount == "/mnt/raid" and report.device == "/dev/mapper/vg0-raid"
    (row,) = report.rows
    assert row.project_id == 40
    assert row.used == 10795758244 * 1024
    assert row.hard == 16106127360 * 1024  # 15 TiB in 1 KiB blocks
    assert row.soft == 0


def test_named_project_human_sizes_and_inodes():
    report = parse_report(_read("xfs_quota_report_pbih_named.txt"))
    row = report.get("myquotaproject")
    assert row is not None and row.project_id is None
    assert row.soft == 450 << 20 and row.hard == 500 << 20 and row.used == 0
    assert (row.inodes_used, row.inodes_soft, row.inodes_hard) == (1, 0, 0)
    assert row.grace == "------"


def test_xfstests_golden_output_squeezed_spaces_and_grace_days():
    report = parse_report(_read("xfs_quota_report_xfstests_106.txt"))
    assert report.mount == "SCRATCH_MNT"
    plain, human = report.rows
    assert plain.name == human.name == "fsgqa"
    assert (plain.used, plain.soft, plain.hard) == (1024 << 10, 512 << 10, 2048 << 10)
    assert (human.used, human.soft, human.hard) == (1 << 20, 512 << 10, 2 << 20)  # same limits, -h form
    assert plain.grace == "3 days" and plain.inodes_hard == 20


def test_rejects_text_that_is_not_a_report():
    with pytest.raises(ValueError):
        parse_report("xfs_quota: cannot setup path for mount /var/nfs: No such device or address\n")


def test_empty_report_with_header_has_no_rows():
    report = parse_report("Project quota on /srv (/dev/sdb1)\n                 Blocks\n")
    assert report.mount == "/srv" and report.rows == ()


@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("8", 8192), ("512K", 524288), ("1.5G", 3 << 29)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_project_name_matches_set_quota_script():
    from hubwizard.core.templating import asset_source

    assert project_name("alice") == "hubwizard-alice"
    assert 'project="hubwizard-$name"' in asset_source("set_quota.sh.j2")
