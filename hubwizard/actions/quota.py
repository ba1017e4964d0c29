"""Reading back XFS project quotas: the parser of ``xfs_quota -x -c 'report -p'``.

Why a parser of its own: the quota step's verify must prove the limits are really set on
the filesystem, not just that a script ran. The report is meant for people, so its shape
varies: numbers in 1 KiB blocks or human units (``-h``: 512K, 2M), names or ``#ID``
(``-n``), an inode block beside the block one (``-i``/``-b``), grace shown as
``[--------]``, ``[------]`` or ``[3 days]``. It is tested on real captured reports
(tests/data/xfs_quota_*.txt) because no kernel here can produce one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_HEADER = re.compile(r"^(?P<kind>User|Group|Project) quota on (?P<mount>\S+) [(（](?P<device>[^)）]*)[)）]")
# name used soft hard warn [grace]  ( used soft hard warn [grace] )?
_LIMITS = r"(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+\[([^\]]*)\]"
_ROW = re.compile(rf"^(?P<name>\S+)\s+{_LIMITS}(?:\s+{_LIMITS})?\s*$")


@dataclass(frozen=True)
class QuotaRow:
    """One project's line: sizes in bytes (0 = no limit), inodes as counts or None when not shown."""

    name: str  # the project name from /etc/projid, or "#ID" when it has none (or with -n)
    used: int
    soft: int
    hard: int
    grace: str
    inodes_used: int | None = None
    inodes_soft: int | None = None
    inodes_hard: int | None = None

    @property
    def project_id(self) -> int | None:
        return int(self.name[1:]) if self.name.startswith("#") and self.name[1:].isdigit() else None


@dataclass(frozen=True)
class QuotaReport:
    mount: str  # "" when the report had no header (-N)
    device: str
    rows: tuple[QuotaRow, ...]

    def get(self, name: str) -> QuotaRow | None:
        return next((r for r in self.rows if r.name == name), None)


def parse_size(text: str, *, block: int = 1024) -> int:
    """'1024' (in 1 KiB blocks) or a human size '512K', '2M', '1.5G' -> bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTPE]?)", text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    number, unit = m.groups()
    if not unit:
        return int(float(number) * block)
    return int(float(number) * _UNITS[unit])


def _count(text: str) -> int:
    """Inode columns: plain counts, or human ('1.2k' style is not used by xfs_quota; 'K' is)."""
    return parse_size(text, block=1)


def parse_report(text: str) -> QuotaReport:
    """Parse a project (or user/group) quota report; lines it does not know are skipped.

    Raises ValueError when no quota line at all can be read, so a changed output format
    fails loudly instead of reading as "no quotas".
    """
    mount = device = ""
    rows: list[QuotaRow] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(">"):  # quoted in mail: keep the content
            line = line.lstrip("> ").strip()
        header = _HEADER.match(line)
        if header:
            mount, device = header.group("mount"), header.group("device")
            continue
        m = _ROW.match(line)
        if not m or m.group("name") in ("Project", "User", "Group", "----------"):
            continue
        g = m.groups()
        try:
            row = QuotaRow(
                name=g[0],
                used=parse_size(g[1]),
                soft=parse_size(g[2]),
                hard=parse_size(g[3]),
                grace=g[5].strip(),
                inodes_used=_count(g[6]) if g[6] else None,
                inodes_soft=_count(g[7]) if g[7] else None,
                inodes_hard=_count(g[8]) if g[8] else None,
            )
        except ValueError:
            continue
        rows.append(row)
    if not rows and not mount:
        raise ValueError("not an xfs_quota report: no 'Project quota on ...' header and no quota lines")
    return QuotaReport(mount, device, tuple(rows))


def project_name(folder_name: str) -> str:
    """The project set_quota.sh creates for STORAGE/FOLDER (keep in step with set_quota.sh.j2)."""
    return f"hubwizard-{folder_name}"
