"""The exception tree: every error Codeswarm raises on purpose is a CodeswarmError.

Pure (no imports beyond typing), so the protocol, the core and the CLI can all share it. A caller
catches the narrowest class it can act on; anything else that escapes is a bug.

    CodeswarmError
    ├── ConfigError            a config file is missing, unreadable or invalid
    ├── InvalidParam           one provider parameter (config defaults or a launch override)
    ├── ProtocolError          a peer broke its wire format
    │   └── BadRequest         an HTTP request head of the web bridge
    ├── Rejection              a command the router refuses (carries the protocol `code`)
    ├── SelectorError          a node selector that is malformed or out of range (carries the code)
    ├── ProviderError          a backend call failed (`transient`: no evidence about a job)
    ├── CommandTooLarge        a command over the 1 MiB line limit, caught before it is sent
    ├── RuntimeFailure         an agent runtime (codex, claude) failed under the worker
    ├── ArchiveError           a workspace archive could not be made
    ├── RouterUnavailable      no router answers on the control socket
    └── RouterLocked           another router already holds the state dir
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any



class CodeswarmError(Exception):
    """Base class of every error Codeswarm raises on purpose."""


class ConfigError(CodeswarmError):
    """A configuration file is missing, unreadable or invalid."""


class InvalidParam(CodeswarmError, ValueError):
    """One provider parameter has a bad value: `key` names it, `problem` says what is wrong. Also a
    ValueError with args (key, problem), which the spend and launch-policy checks were written against."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


class ProtocolError(CodeswarmError):
    """A peer sent bytes its wire format does not allow (the connection cannot go on as is)."""


class BadRequest(ProtocolError):
    """An HTTP request head the web bridge cannot serve (answered with 400)."""


class Rejection(CodeswarmError):
    """A command the router refuses; becomes a `command_rejected` event (PROTOCOL.md 4.8).

    `code` is the protocol's open enumeration (`invalid_payload`, `unknown_swarm`, ...); `extra`
    fields are added to the event's data."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        request_id: str | None = None,
        command: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id
        self.command = command
        self.extra = extra

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "reason": self.reason,
            "code": self.code,
            "command": self.command,
        }
        out.update(self.extra)
        return out


class SelectorError(CodeswarmError):
    """A node selector the router cannot use. `code` is the rejection code it maps to:
    `invalid_payload` (malformed) or `invalid_nodes` (an index out of range)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProviderError(CodeswarmError):
    """A backend call failed. `transient` failures are never evidence about a job."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class CommandTooLarge(CodeswarmError):
    """A command would exceed the protocol's 1 MiB line limit; caught before it is sent."""


class RuntimeFailure(CodeswarmError):
    """An agent runtime could not be started or stopped answering (the worker reports it)."""


class ArchiveError(CodeswarmError):
    """A workspace archive could not be made (becomes `workspace_archive_failed`)."""


class RouterUnavailable(CodeswarmError):
    """No router answers on the control socket."""


class RouterLocked(CodeswarmError):
    """Another router already runs on this state dir (it holds the lock)."""
