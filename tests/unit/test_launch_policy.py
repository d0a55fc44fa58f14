"""launch_policy.py (issue 12 #1): what a protocol client may set at launch, and the TCP token."""

from __future__ import annotations

import pytest

from codeswarm.launch_policy import client_params, tcp_token_ok

FIELDS = [
    {"key": "partition", "type": "text"},
    {"key": "gpus", "type": "number"},
    {"key": "exclusive", "type": "boolean"},
    {"key": "worker_mode", "type": "select", "options": [{"value": "mock"}, {"value": "claude"}]},
]


def test_offered_fields_pass_with_values_of_their_type():
    got = client_params("p", FIELDS, {"partition": "debug", "gpus": 2, "exclusive": True, "worker_mode": "claude",
                                      "time_limit": None})
    assert got == {"partition": "debug", "gpus": 2, "exclusive": True, "worker_mode": "claude"}


@pytest.mark.parametrize("key", ["codex_path", "claude_cli_path", "codex_home", "codex_config", "model_providers",
                                 "claude_env_profile", "sandbox_mode", "approval_policy", "native_auto_approve",
                                 "_launch_hard_timeout_seconds", "swarm_alias", "auto_route"])
def test_anything_not_offered_is_refused(key):
    with pytest.raises(ValueError) as info:
        client_params("mock-only", FIELDS, {key: "x"})
    assert info.value.args[0] == key
    assert "not settable by clients of preset 'mock-only'" in info.value.args[1]


def test_worker_mode_is_refused_when_the_preset_does_not_offer_it():
    # The reported attack: a mock-only preset (built-in fields) steered to codex with a client's binary.
    with pytest.raises(ValueError) as info:
        client_params("local-mock", [], {"worker_mode": "codex", "codex_path": "/tmp/evil.sh"})
    assert info.value.args[0] == "worker_mode"


@pytest.mark.parametrize("key, value, problem", [("worker_mode", "codex", "must be one of mock, claude"),
                                                 ("gpus", "2", "must be a number"), ("gpus", True, "must be a number"),
                                                 ("exclusive", "true", "must be true or false"),
                                                 ("partition", 5, "must be a string"),
                                                 ("partition", "a\nb", "line breaks")])
def test_values_must_match_the_field(key, value, problem):
    with pytest.raises(ValueError) as info:
        client_params("p", FIELDS, {key: value})
    assert info.value.args == (key, info.value.args[1]) and problem in info.value.args[1]


def test_tcp_token():
    assert tcp_token_ok({}, None)
    assert tcp_token_ok({"auth_token": "s" * 20}, "s" * 20)
    assert not tcp_token_ok({"auth_token": "s" * 19}, "s" * 20)
    assert not tcp_token_ok({}, "s" * 20)
    assert not tcp_token_ok({"auth_token": 5}, "s" * 20)
    assert not tcp_token_ok(["auth_token"], "s" * 20)
