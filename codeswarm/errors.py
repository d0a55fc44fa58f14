"""The exception hierarchy: one base class, a few subclasses a caller can act on."""

from __future__ import annotations


class CodeswarmError(Exception):
    """Base class of every error Codeswarm raises on purpose."""


class ConfigError(CodeswarmError):
    """A configuration file is missing, unreadable or invalid."""


class ProtocolError(CodeswarmError):
    """A peer sent something the protocol does not allow."""


class RouterUnavailable(CodeswarmError):
    """No router answers on the control socket."""


class ProviderError(CodeswarmError):
    """A backend call failed. `transient` failures are never evidence about a job."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class CommandTooLarge(CodeswarmError):
    """A command would exceed the protocol's 1 MiB line limit; caught before it is sent."""
