"""The small site files unit tests start from: a hub and node1 at 10.0.0.10/.11, as TOML text.

Tests append tables to the text (``[oauth]``, ``[backups]``...) or replace a line in it, so it is
text and not a parsed Site.
"""

from __future__ import annotations

# A test site's login: the dummy authenticator, with the acknowledgement the site file asks for.
LAB_LOGIN = '\n[oauth]\nprovider = "dummy"  # a test site: anyone may log in\ni_understand_anyone_can_log_in = true\n'


def host(name: str, address: str, role: str, extra: str = "") -> str:
    """One [[hosts]] table."""
    return f'\n[[hosts]]\nname = "{name}"\naddress = "{address}"\nrole = "{role}"\n{extra}'


def site_text(name: str = "demo", *, track: str | None = None, more_hosts: str = "") -> str:
    """[site], the hub and node1 (and ``more_hosts``), without [oauth]."""
    track_line = f'track = "{track}"\n' if track else ""
    return (f'\n[site]\nname = "{name}"\n{track_line}domain = "hub.example.org"\nemail = "admin@example.org"\n'
            + host("hub", "10.0.0.10", "hub") + host("node1", "10.0.0.11", "node") + more_hosts)
