"""Config loading (PROTOCOL.md 9): the shipped examples load; every error names the file and the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from codeswarm.config import DEFAULT_LOCAL_CONFIG, RouterSettings, load_config, parse_config, validate_params
from codeswarm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

SLURM_PROFILE = {"workspace_root": "/shared/swarm", "cluster_subdir": "cs", "partition": "p",
                 "time_limit": "01:00:00"}


def local_cfg(**over) -> dict:
    cfg = copy.deepcopy(DEFAULT_LOCAL_CONFIG)
    cfg.update(over)
    return cfg


def slurm_cfg(**profile) -> dict:
    return {"cluster": {"slurm": {"profiles": {"p1": {**SLURM_PROFILE, **profile}}}},
            "launch_providers": [{"id": "s", "backend": "slurm"}]}


def write(tmp_path: Path, obj) -> Path:
    p = tmp_path / "conf.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def error(tmp_path: Path, obj) -> str:
    p = write(tmp_path, obj)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert str(p) in msg, msg  # every message names the file
    return msg


# ---------------------------------------------------------------- the shipped configs


def test_configs_local_json_loads(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "local.json")
    assert [p.id for p in cfg.presets] == ["local-mock", "local-codex", "local-claude"]
    assert cfg.preset(None).id == "local-mock"
    assert cfg.preset(None).defaults["worker_mode"] == "mock"
    assert cfg.local is not None and cfg.local.workspace_root == ROOT / "runs"
    assert cfg.slurm_profiles == {}
    assert cfg.router.inject_timeout_seconds == 60 and cfg.router.terminated_ttl_seconds == 900
    assert cfg.router.poll_interval_seconds == 0.5
    assert cfg.preset("local-claude").backend == "local" and cfg.preset("nope") is None
    public = cfg.preset("local-mock").public()
    assert public["launch_soft_timeout_seconds"] == 30 and public["launch_hard_timeout_seconds"] == 120
    # No launch_fields: a local preset offers no field; its runtime is the preset's (issue 12 #1).
    assert public["disabled"] is False and public["launch_fields"] == []


def test_configs_hpcfund_json_loads():
    cfg = load_config(ROOT / "configs" / "hpcfund.json")
    assert cfg.local is None
    assert set(cfg.slurm_profiles) == {"hpcfund", "hpcfund-onsite"}
    hp = cfg.slurm_profiles["hpcfund"]
    assert (hp.login_host, hp.partition, hp.time_limit, hp.account, hp.qos) == (
        "hpcfund", "mi2508x", "02:00:00", None, None)
    assert hp.workspace_root == Path("/shared/home/alice/swarm") and hp.cluster_subdir == "codeswarm"
    assert hp.ssh_retry_attempts == 4 and hp.ssh_retry_delay_seconds == 1.5  # shared keys reach profiles
    assert cfg.slurm_profiles["hpcfund-onsite"].login_host == ""
    assert [p.id for p in cfg.presets] == ["hpcfund-codex", "hpcfund-claude-onsite"]
    assert cfg.preset("hpcfund-claude-onsite").cluster_profile == "hpcfund-onsite"
    assert cfg.slurm_profile("hpcfund-onsite").partition == "mi2104x"
    assert cfg.slurm_profile(None).name == "hpcfund"  # no 'default' profile: the first one
    assert cfg.router.status_poll_interval_seconds == 15


def test_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg.path is None and cfg.preset(None).id == "local-mock"
    assert cfg.local.workspace_root == tmp_path / "runs"


def test_router_defaults_match_the_spec():
    s = RouterSettings()
    assert (s.inject_timeout_seconds, s.terminated_ttl_seconds, s.max_terminated_swarms, s.poll_interval_seconds,
            s.status_poll_interval_seconds, s.job_gone_confirmations, s.worker_heartbeat_timeout_seconds,
            s.worker_start_timeout_seconds, s.approval_timeout_seconds, s.graceful_terminate_timeout_seconds,
            s.local_graceful_terminate_timeout_seconds, s.event_log_max_events, s.idempotency_ttl_seconds,
            s.include_raw, s.tcp_enabled, s.tcp_host, s.tcp_port) == (
        60, 900, 100, 0.5, 15, 3, 60, 300, 3600, 300, 20, 200_000, 86_400, False, False, "127.0.0.1", 8765)


def test_unknown_keys_are_ignored(tmp_path):
    cfg = local_cfg(something_new={"x": 1})
    cfg["router"]["future_knob"] = "x"
    cfg["launch_providers"][0]["future"] = [1]
    assert load_config(write(tmp_path, cfg)).presets[0].id == "local-mock"


def test_legacy_flat_slurm_form_is_one_default_profile(tmp_path):
    cfg = {"cluster": {"backend": "slurm", **SLURM_PROFILE}, "launch_providers": [{"id": "s", "backend": "slurm"}]}
    loaded = load_config(write(tmp_path, cfg))
    assert list(loaded.slurm_profiles) == ["default"] and loaded.slurm_profile(None).partition == "p"


def test_cluster_config_is_a_legacy_alias_of_cluster_profile(tmp_path):
    cfg = slurm_cfg()
    cfg["launch_providers"][0]["cluster_config"] = "p1"
    assert load_config(write(tmp_path, cfg)).presets[0].cluster_profile == "p1"


def test_without_launch_providers_one_preset_per_backend(tmp_path):
    cfg = {"cluster": {"local": {}, "slurm": {"profiles": {"a": SLURM_PROFILE}}}}
    loaded = load_config(write(tmp_path, cfg))
    assert [(p.id, p.backend) for p in loaded.presets] == [("local", "local"), ("slurm", "slurm")]


def test_relative_workspace_root_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = local_cfg(cluster={"local": {"workspace_root": "sub/runs"}})
    assert load_config(write(tmp_path, cfg)).local.workspace_root == tmp_path / "sub" / "runs"


def test_time_limit_with_days_is_accepted(tmp_path):
    assert load_config(write(tmp_path, slurm_cfg(time_limit="2-00:00:00"))).slurm_profile("p1").time_limit


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in str(info.value) and "not found" in str(info.value)


def test_unreadable_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)  # a directory
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text", ["{", "", "{'single': 'quotes'}", '{"cluster": {}} extra', "\ufeff{}"])
def test_broken_json(tmp_path, text):
    assert "not valid JSON" in error(tmp_path, text)


@pytest.mark.parametrize("obj", [[], "x", 3, None])
def test_top_level_must_be_an_object(tmp_path, obj):
    assert "top level" in error(tmp_path, json.dumps(obj))


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"router": {}}, "'cluster'"),
        ({"cluster": []}, "'cluster'"),
        ({"cluster": {}}, "cluster"),
        ({"cluster": {"kubernetes": {}}}, "cluster"),
        ({"cluster": {"local": "runs"}}, "cluster.local"),
        ({"cluster": {"local": {"workspace_root": ""}}}, "workspace_root"),
        ({"cluster": {"local": {"workspace_root": 5}}}, "workspace_root"),
        ({"cluster": {"local": {"default_sandbox_mode": "yolo"}}}, "default_sandbox_mode"),
        ({"cluster": {"slurm": []}}, "cluster.slurm"),
        ({"cluster": {"slurm": {"profiles": {}}}}, "profiles"),
        ({"cluster": {"slurm": {"profiles": []}}}, "profiles"),
        ({"cluster": {"slurm": {"profiles": {"p": 3}}}}, "profiles.p"),
    ],
)
def test_cluster_errors(tmp_path, cfg, needle):
    cfg.setdefault("launch_providers", [{"id": "x", "backend": "local"}])
    assert needle in error(tmp_path, cfg)


@pytest.mark.parametrize("missing", ["workspace_root", "cluster_subdir", "partition", "time_limit"])
def test_slurm_profile_missing_key(tmp_path, missing):
    cfg = slurm_cfg()
    del cfg["cluster"]["slurm"]["profiles"]["p1"][missing]
    msg = error(tmp_path, cfg)
    assert "cluster.slurm.profiles.p1" in msg and f"'{missing}'" in msg


def test_shared_slurm_keys_fill_a_profile(tmp_path):
    cfg = {"cluster": {"slurm": {**SLURM_PROFILE, "profiles": {"a": {"partition": "other"}}}},
           "launch_providers": [{"id": "s", "backend": "slurm", "cluster_profile": "a"}]}
    prof = load_config(write(tmp_path, cfg)).slurm_profile("a")
    assert prof.partition == "other" and prof.time_limit == "01:00:00"


@pytest.mark.parametrize("value", ["2h", "1:00", "01:00:00:00", "aa:bb:cc", "", 3600, "01:00:00 "])
def test_bad_time_limit(tmp_path, value):
    msg = error(tmp_path, slurm_cfg(time_limit=value))
    assert "time_limit" in msg and "profiles.p1" in msg


@pytest.mark.parametrize(
    "profile, needle",
    [({"workspace_root": "relative/dir"}, "workspace_root"),
     ({"sbatch_extra": "--exclusive"}, "sbatch_extra"),
     ({"sbatch_extra": [1]}, "sbatch_extra"),
     ({"env": {"A": 1}}, "env"),
     ({"env": []}, "env"),
     ({"ssh_retry_attempts": 1.5}, "ssh_retry_attempts"),
     ({"ssh_retry_attempts": "4"}, "ssh_retry_attempts"),
     ({"ssh_retry_delay_seconds": -1}, "ssh_retry_delay_seconds")],
)
def test_bad_slurm_profile_values(tmp_path, profile, needle):
    msg = error(tmp_path, slurm_cfg(**profile))
    assert needle in msg and "profiles.p1" in msg


@pytest.mark.parametrize(
    "router, needle",
    [
        ({"inject_timeout_seconds": "60"}, "'inject_timeout_seconds' must be a number"),
        ({"inject_timeout_seconds": True}, "'inject_timeout_seconds'"),
        ({"terminated_ttl_seconds": -1}, "'terminated_ttl_seconds' must not be negative"),
        ({"max_terminated_swarms": 1.5}, "'max_terminated_swarms' must be an integer"),
        ({"job_gone_confirmations": "3"}, "'job_gone_confirmations'"),
        ({"event_log_max_events": 10.0}, "'event_log_max_events' must be an integer"),
        ({"poll_interval_seconds": 0}, "'poll_interval_seconds' must be at least 0.01"),
        ({"include_raw": "yes"}, "'include_raw'"),
        ({"state_dir": 5}, "'state_dir'"),
        ({"download_archive_root": ["a"]}, "'download_archive_root'"),
        ({"tcp": "on"}, "'tcp'"),
        ({"tcp": {"port": "8765"}}, "'port'"),
        ({"tcp": {"port": -1}}, "'port'"),
    ],
)
def test_router_section_errors(tmp_path, router, needle):
    msg = error(tmp_path, local_cfg(router=router))
    assert needle in msg and "router" in msg


def test_router_must_be_an_object(tmp_path):
    assert "'router'" in error(tmp_path, local_cfg(router=[1]))


def test_router_values_reach_the_settings(tmp_path):
    cfg = local_cfg(router={"terminated_ttl_seconds": 5, "max_terminated_swarms": 2, "include_raw": True,
                            "tcp": {"enabled": True, "port": 9999}, "job_gone_confirmations": 5})
    s = load_config(write(tmp_path, cfg)).router
    assert (s.terminated_ttl_seconds, s.max_terminated_swarms, s.include_raw, s.tcp_enabled, s.tcp_port,
            s.job_gone_confirmations, s.inject_timeout_seconds) == (5, 2, True, True, 9999, 5, 60)


def preset(**over) -> dict:
    return {"id": "p", "backend": "local", **over}


@pytest.mark.parametrize(
    "providers, needle",
    [
        ([], "launch_providers must be a non-empty array"),
        ({"id": "p"}, "launch_providers must be a non-empty array"),
        (["p"], "launch_providers[0] must be an object"),
        ([{"backend": "local"}], "launch_providers[0]: 'id'"),
        ([preset(id="")], "launch_providers[0]: 'id'"),
        ([preset(id=3)], "launch_providers[0]: 'id'"),
        ([preset(backend="kubernetes")], "launch_providers[0]: 'backend' must be 'local' or 'slurm'"),
        ([preset(backend=None)], "'backend'"),
        ([preset(), preset(label="again")], "launch_providers[1]: duplicate id 'p'"),
        ([preset(backend="slurm")], "cluster.slurm is not configured"),
        ([preset(defaults=[])], "launch_providers[0]: 'defaults' must be an object"),
        ([preset(defaults={"worker_mode": "gpt"})], "launch_providers[0]: defaults.worker_mode"),
        ([preset(defaults={"approval_policy": "sometimes"})], "defaults.approval_policy"),
        ([preset(defaults={"sandbox_mode": "none"})], "defaults.sandbox_mode"),
        ([preset(defaults={"native_auto_approve": "true"})], "defaults.native_auto_approve"),
        ([preset(defaults={"mock_delay_ms": -5})], "defaults.mock_delay_ms"),
        ([preset(defaults={"mock_delay_ms": 1.5})], "defaults.mock_delay_ms"),
        ([preset(defaults={"time_limit": "forever"})], "defaults.time_limit"),
        ([preset(defaults={"partition": 7})], "defaults.partition"),
        ([preset(launch_fields={"a": 1})], "'launch_fields' must be an array"),
        ([preset(env={"A": 1})], "'env'"),
        ([preset(launch_soft_timeout_seconds="30")], "'launch_soft_timeout_seconds'"),
        ([preset(launch_hard_timeout_seconds=-1)], "'launch_hard_timeout_seconds'"),
    ],
)
def test_preset_errors(tmp_path, providers, needle):
    assert needle in error(tmp_path, local_cfg(launch_providers=providers))


def test_local_preset_without_local_cluster(tmp_path):
    cfg = slurm_cfg()
    cfg["launch_providers"].append({"id": "l", "backend": "local"})
    assert "launch_providers[1]: backend 'local' but cluster.local is not configured" in error(tmp_path, cfg)


def test_unknown_cluster_profile(tmp_path):
    cfg = slurm_cfg()
    cfg["launch_providers"][0]["cluster_profile"] = "nope"
    assert "cluster_profile 'nope'" in error(tmp_path, cfg)


def test_launch_panels_not_an_array(tmp_path):
    assert "launch_panels" in error(tmp_path, local_cfg(launch_providers=[preset(launch_panels=5)]))


@pytest.mark.parametrize("value", [["p1"], {"p1": 1}])
def test_cluster_profile_not_a_string(tmp_path, value):
    cfg = slurm_cfg()
    cfg["launch_providers"][0]["cluster_profile"] = value
    assert "cluster_profile" in error(tmp_path, cfg)


def test_validate_params_accepts_the_known_good_values():
    ok = {"worker_mode": "claude", "approval_policy": "on-request", "sandbox_mode": "read-only",
          "native_auto_approve": True, "fresh_thread_per_injection": False, "mock_delay_ms": 0,
          "time_limit": "00:10:00", "partition": "gpu", "account": None, "unknown_key": object()}
    assert validate_params(ok, "w") is ok


def test_parse_config_without_a_path_names_the_embedded_default():
    with pytest.raises(ConfigError, match="embedded default"):
        parse_config({"cluster": {}}, None, base_dir=Path("/"))


# ---------------------------------------------------------------- issue 12 #10: strict types and bounds


@pytest.mark.parametrize(
    "router, needle",
    [
        ({"tcp": {"enabled": "false"}}, "router.tcp: 'enabled' must be true or false, got 'false'"),
        ({"tcp": {"enabled": 1}}, "'enabled' must be true or false"),
        ({"tcp": {"port": 70000}}, "router.tcp: 'port' must be at most 65535, got 70000"),
        ({"tcp": {"port": 0}}, "'port' must be at least 1"),
        ({"tcp": {"host": "0.0.0.0"}}, "router.tcp: 'host' must be a loopback address"),
        ({"tcp": {"host": "192.168.1.5"}}, "'host' must be a loopback address"),
        ({"tcp": {"host": 127}}, "'host' must be a loopback address"),
        ({"tcp": {"token": "short"}}, "router.tcp: 'token' must be a string of at least 16"),
        ({"tcp": {"token": "has a space in it, so no"}}, "'token'"),
        ({"poll_interval_seconds": 1e-9}, "router: 'poll_interval_seconds' must be at least 0.01, got 1e-09"),
        ({"status_poll_interval_seconds": 0}, "'status_poll_interval_seconds' must be at least 0.1"),
        ({"worker_heartbeat_timeout_seconds": 0}, "'worker_heartbeat_timeout_seconds' must be at least 1"),
        ({"inject_timeout_seconds": 1e300}, "'inject_timeout_seconds' must be at most"),
        ({"job_gone_confirmations": 0}, "'job_gone_confirmations' must be at least 1"),
        ({"event_log_max_events": 0}, "'event_log_max_events' must be at least 1"),
        ({"state_dir": ""}, "'state_dir' must be a string path"),
    ],
)
def test_router_strict_types_and_bounds(tmp_path, router, needle):
    msg = error(tmp_path, local_cfg(router=router))
    assert needle in msg, msg


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_tcp_hosts_load(tmp_path, host):
    s = load_config(write(tmp_path, local_cfg(router={"tcp": {"enabled": False, "host": host,
                                                               "token": "t" * 16}}))).router
    assert (s.tcp_enabled, s.tcp_host, s.tcp_token) == (False, host, "t" * 16)


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"launch_fields": [{"label": "x"}]}, "launch_fields[0].key must be a non-empty string"),
        ({"launch_fields": [{"key": "a", "type": "file"}]}, "launch_fields[0].type must be one of"),
        ({"launch_fields": [{"key": "a", "type": "select"}]}, "a select needs a non-empty 'options'"),
        ({"launch_fields": [{"key": "a"}, {"key": "a"}]}, "duplicate key 'a'"),
        ({"launch_fields": [{"key": "_launch_hard_timeout_seconds"}]}, "is set by the router"),
        ({"env": {"BAD-NAME": "x"}}, "'BAD-NAME' is not a valid environment variable name"),
        ({"launch_soft_timeout_seconds": True}, "'launch_soft_timeout_seconds'"),
    ],
)
def test_preset_strictness(tmp_path, over, needle):
    assert needle in error(tmp_path, local_cfg(launch_providers=[preset(**over)]))


@pytest.mark.parametrize("profile, needle", [({"login_host": 5}, "'login_host' must be a string"),
                                             ({"ssh_retry_attempts": 0}, "'ssh_retry_attempts' must be at least 1"),
                                             ({"env": {"1X": "a"}}, "not a valid environment variable name")])
def test_slurm_profile_strictness(tmp_path, profile, needle):
    assert needle in error(tmp_path, slurm_cfg(**profile))
