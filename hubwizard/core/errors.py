"""A small hierarchy of errors meant for people: each carries a title, the exit code the
CLI returns for it, and a fix where one is known. Anything else is a bug."""

from __future__ import annotations


class HubwizardError(Exception):
    """Base: a message for the admin, not a traceback."""

    exit_code = 1
    title = "hubwizard failed"

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class ConfigError(HubwizardError):
    """Bad input: site file, secrets, flags. Nothing on any host was touched."""

    exit_code = 2
    title = "bad input"


class UnreachableError(HubwizardError):
    """A host could not be reached or authenticated over SSH."""

    exit_code = 3
    title = "cannot reach a host"
    host: str | None = None  # set where known: named in --json's error document


class HostKeyError(UnreachableError):
    """Unknown or changed SSH host key: refused."""

    title = "host key refused"


class StepFailed(HubwizardError):
    """A recipe step failed on a host; carries everything the admin needs to act."""

    exit_code = 1
    title = "step failed"

    def __init__(self, *, host: str, step: str, command: str, output_tail: str, fix: str | None) -> None:
        msg = f"step {step!r} failed on host {host!r}\n  command: {command}\n  output (last lines):\n"
        msg += "\n".join(f"    {line}" for line in output_tail.splitlines()[-15:])
        super().__init__(msg, fix=fix)
        self.host, self.step, self.command, self.output_tail = host, step, command, output_tail


class UsageError(Exception):
    """Bad flags (a combination the command cannot honour): exit 2, nothing touched."""
