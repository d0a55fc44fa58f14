"""One exception tree (issue 11, item 3): every exception class Codeswarm defines is a CodeswarmError,
and the typed errors carry what their callers used to dig out of `args`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import codeswarm
from codeswarm import errors
from codeswarm.config import validate_params
from codeswarm.protocol import Command, parse_node_selector, resolve_nodes

# click needs its own base class to map an exception to an exit code; these carry the CLI's exit
# codes (commands/common.py) and are raised only after a CodeswarmError was translated.
CLI_EXIT_CARRIERS = {"codeswarm.commands.common." + n for n in ("Rejected", "TimedOut", "Unavailable", "BadConfig")}


def _all_modules() -> list[str]:
    names = ["codeswarm"]
    for info in pkgutil.walk_packages(codeswarm.__path__, "codeswarm."):
        if info.name != "codeswarm.__main__":  # runs the CLI when imported
            names.append(info.name)
    return names


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found.append(obj)
    return found


def test_the_walk_finds_the_exceptions_it_checks() -> None:
    names = {f"{c.__module__}.{c.__name__}" for c in _exception_classes()}
    assert {"codeswarm.errors.Rejection", "codeswarm.worker.runtimes.codex.CodexError"} <= names
    assert CLI_EXIT_CARRIERS <= names


def test_every_exception_class_is_in_the_codeswarm_tree() -> None:
    outside = [f"{c.__module__}.{c.__name__}" for c in _exception_classes()
               if not issubclass(c, errors.CodeswarmError) and f"{c.__module__}.{c.__name__}" not in CLI_EXIT_CARRIERS]
    assert outside == []


def test_the_old_names_are_the_tree_classes() -> None:
    from codeswarm import protocol
    from codeswarm.router import archive, web
    from codeswarm.worker.runtimes import codex

    assert protocol.Rejection is errors.Rejection
    assert web.BadRequest is errors.BadRequest and issubclass(errors.BadRequest, errors.ProtocolError)
    assert archive.ArchiveError is errors.ArchiveError
    assert issubclass(codex.CodexError, errors.RuntimeFailure)


def test_a_rejection_carries_its_protocol_code() -> None:
    rej = errors.Rejection("unknown_swarm", "unknown swarm_id", request_id="r1", command="inject", swarm_id="s")
    assert rej.data() == {"request_id": "r1", "reason": "unknown swarm_id", "code": "unknown_swarm",
                          "command": "inject", "swarm_id": "s"}
    assert str(rej) == "unknown swarm_id"


@pytest.mark.parametrize(("value", "code"), [("0-", "invalid_payload"), ("9", "invalid_nodes"), ([], "invalid_payload")])
def test_a_selector_error_carries_the_code_it_maps_to(value: object, code: str) -> None:
    with pytest.raises(errors.SelectorError) as info:
        parse_node_selector(value, 4)
    assert info.value.code == code and str(info.value) == info.value.message
    with pytest.raises(errors.Rejection) as rej:
        resolve_nodes(Command("inject", "r2", {}), value, 4)
    assert (rej.value.code, rej.value.reason, rej.value.request_id) == (code, info.value.message, "r2")


def test_an_invalid_param_names_the_key_and_the_problem() -> None:
    with pytest.raises(errors.InvalidParam) as info:
        validate_params({"worker_mode": "mock", "mock_delay_ms": -1}, "provider_params")
    assert (info.value.key, info.value.problem) == ("mock_delay_ms", "must be a non-negative integer")
    assert str(info.value) == "mock_delay_ms: must be a non-negative integer"


def test_provider_errors_say_whether_they_are_evidence() -> None:
    assert errors.ProviderError("ssh timed out", transient=True).transient is True
    assert isinstance(errors.ProviderError("sbatch refused", transient=False), errors.CodeswarmError)
