"""The exception tree.

Every error the user can meet derives from :class:`ClaudeNotifyError`, carries the exit code the
CLI should use and a one-line, user-safe message. The CLI catches them in one place and prints
``claude-notify: <message>``::

    ClaudeNotifyError (1)
    ├── UsageError (2)          bad flags, bad template placeholders, bad durations
    ├── ConfigError (2)         broken config file or value: names file, line and key
    ├── CommandNotFound (127)   the wrapped command does not exist
    ├── CommandNotExecutable (126)
    ├── NotifyError (1)         no backend could deliver
    └── CloudError (1)          the hosted backend refused or failed a request
        ├── CloudUnreachable (1)  retryable: the event was spooled, not lost
        ├── Unauthorized (1)    the server does not take this machine's token: log in again
        ├── Refused (1)         refused for good (validation, plan limits), with a status
        └── Rejected (1)        the agent's credential refused: retrying will not help

Third-party exceptions (D-Bus, OSError from helpers, TOML parsers) are translated at the edge of
the module that meets them, with ``raise ... from exc``.
"""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """One line of our own on stderr, never mixed into the wrapped command's stdout."""
    sys.stderr.write(f"claude-notify: {message}\n")
    sys.stderr.flush()


class ClaudeNotifyError(Exception):
    """Base class: a one-line message and the process exit code that goes with it."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ClaudeNotifyError):
    """The command line cannot be understood."""

    exit_code = 2


class ConfigError(ClaudeNotifyError):
    """The configuration file or an environment variable holds a bad value."""

    exit_code = 2


class CommandNotFound(ClaudeNotifyError):
    """The command to run does not exist (shells use 127 for this)."""

    exit_code = 127


class CommandNotExecutable(ClaudeNotifyError):
    """The command exists but cannot be executed (shells use 126 for this)."""

    exit_code = 126


class NotifyError(ClaudeNotifyError):
    """No notification backend delivered the notification."""

    exit_code = 1


class CloudError(ClaudeNotifyError):
    """The hosted backend refused or failed a request."""

    exit_code = 1


class CloudUnreachable(CloudError):
    """The hosted backend could not be reached; the event was spooled and will be retried."""

    exit_code = 1
    retryable = True


class Unauthorized(CloudError):
    """The server does not accept the token (revoked, expired, wrong server)."""

    exit_code = 1


class Refused(CloudError):
    """The server refused this request for good (validation, plan limits)."""

    exit_code = 1

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class WrongRegion(Refused):
    """This server keeps no account for the address: it lives in another region's server
    (data residency), which ``server`` names; ``claude-notify login`` signs in there instead."""

    def __init__(self, message: str, *, region: str, server: str) -> None:
        super().__init__(message, 421)
        self.region = region
        self.server = server


class Rejected(CloudError):
    """The server refused this agent's credential: retrying will not help."""

    exit_code = 1
