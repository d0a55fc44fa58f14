"""End to end through the real .pyz: a 2-node local swarm with worker_mode codex (the real pinned
app-server on every node) against the fake Responses API on loopback; approvals through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fake_responses import FakeResponses


def codex_config(tmp: Path, codex_bin: str, fake: FakeResponses) -> dict[str, Any]:
    defaults = {"worker_mode": "codex", "approval_policy": "untrusted", "sandbox_mode": "danger-full-access",
                "codex_path": codex_bin, "codex_home": "{swarm_root}/codex_home/node_{node_id}",
                "codex_ephemeral": True, **fake.provider_params()}
    return {
        "cluster": {"local": {"workspace_root": str(tmp / "runs")}},
        "router": {"inject_timeout_seconds": 60, "poll_interval_seconds": 0.1},
        "launch_providers": [{"id": "local-codex", "label": "Local (Codex, fake model)", "backend": "local",
                              "defaults": defaults, "env": {"FAKE_MODEL_API_KEY": "sk-fake-e2e"}}],
    }


def node_events(events: list[dict[str, Any]], injection_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event"], e["data"]) for e in events if e["data"].get("injection_id") == injection_id]


def start_inject(cs: Any, sid: str, prompt: str, node: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(cs.pyz), "inject", sid, "--prompt", prompt, "--nodes", str(node),
                             "--wait", "--timeout", "90", "--json"], env=cs.env, cwd=cs.tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def approval_for(cs: Any, sid: str, node: int, seen: set[str]) -> dict[str, Any]:
    evs = cs.wait_for(lambda evs: any(e["event"] == "exec_approval_required" and e["data"]["node_id"] == node
                                      and e["data"]["call_id"] not in seen for e in evs), "--swarm", sid, timeout=60)
    return next(e["data"] for e in evs if e["event"] == "exec_approval_required" and e["data"]["node_id"] == node
                and e["data"]["call_id"] not in seen)


def test_two_node_codex_swarm_with_cli_approvals(cs: Any, codex_bin: str, fake_model: FakeResponses) -> None:
    cs.write_config(codex_config(cs.tmp, codex_bin, fake_model))
    launched = cs.json("launch", "--nodes", "2", "--provider", "local-codex")
    sid = launched["swarm_id"]

    # One injection on both nodes: each real app-server answers through the fake model.
    out = cs.json("inject", sid, "--prompt", "Say hello please", "--wait", "--timeout", "90", timeout=150)
    assert [n["node_id"] for n in out["nodes"]] == [0, 1]
    assert all(n["outcome"] == "completed" for n in out["nodes"]), out
    # a turn's usage can follow its turn/completed (codex sends tokenUsage after it at times): look
    # once each turn has one (bounded; the assertions below say which has none)
    try:
        events = cs.wait_settled(lambda es: {e["data"]["injection_id"] for e in es if e["event"] == "usage"}
                                 >= {n["injection_id"] for n in out["nodes"]}, "--swarm", sid, timeout=15)
    except AssertionError:
        events = cs.events("--swarm", sid)
    for rec in out["nodes"]:
        flow = node_events(events, rec["injection_id"])
        names = [n for n, _ in flow]
        assert names[:3] == ["inject_ack", "inject_delivered", "turn_started"], names
        assert names.count("turn_complete") == 1
        deltas = [d["content"] for n, d in flow if n == "assistant_delta"]
        (answer,) = [d for n, d in flow if n == "assistant"]
        assert answer["content"] == "Hello from the fake model. You said: Say hello please"
        assert "".join(deltas) == answer["content"] and answer["final_answer"] is True
        usage = [d for n, d in flow if n == "usage"]
        assert usage and usage[-1]["last_total_tokens"] > 0 and usage[-1]["model_name"] == "gpt-5.5"
        assert all(d["node_id"] == rec["node_id"] and d["swarm_id"] == sid for _, d in flow)

    # An approval accepted through the CLI runs the command on node 1 ...
    seen: set[str] = set()
    proc = start_inject(cs, sid, "RUN: touch approved.txt && echo approved-ok", node=1)
    try:
        req = approval_for(cs, sid, 1, seen)
        seen.add(req["call_id"])
        assert req["rpc_id"] == 0 if "rpc_id" in req else True
        assert "touch approved.txt" in req["command"] and "accept" in req["available_decisions"]
        ok = cs.json("approve", sid, "--node", "1", "--call", req["call_id"], "accept")
        assert ok["approved"] is True and ok["decision"] == "accept"
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stdout + stderr
    (rec,) = json.loads(stdout)["nodes"]
    flow = node_events(cs.events("--swarm", sid), rec["injection_id"])
    (done,) = [d for n, d in flow if n == "command_completed"]
    assert done["status"] == "completed" and "approved-ok" in done["stdout"] and done["call_id"] == req["call_id"]
    names = [n for n, _ in flow]
    assert names.index("exec_approval_required") < names.index("exec_approval_resolved") < names.index("command_started")
    workspaces = {p.parent.name for p in (cs.tmp / "runs").glob("*/node_*/approved.txt")}
    assert workspaces == {"node_01"}

    # ... and a declined one on node 0 does not run.
    proc = start_inject(cs, sid, "RUN: touch declined.txt && echo should-not-run", node=0)
    try:
        req = approval_for(cs, sid, 0, seen)
        bad = cs.run("approve", sid, "--node", "0", "--call", "no-such-call", "accept", check=False)
        assert bad.returncode == 3 and "unknown approval" in bad.stderr
        no = cs.json("approve", sid, "--node", "0", "--call", req["call_id"], "decline")
        assert no["approved"] is False and no["decision"] == "decline"
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stdout + stderr
    (rec,) = json.loads(stdout)["nodes"]
    flow = node_events(cs.events("--swarm", sid), rec["injection_id"])
    (done,) = [d for n, d in flow if n == "command_completed"]
    assert done["status"] == "declined"
    assert not list((cs.tmp / "runs").glob("*/node_*/declined.txt"))

    out = cs.json("terminate", sid, "--wait", timeout=120)
    assert out["state"] == "terminated"
    # The API key reached codex (the fake saw it) but no file of the router or the swarm holds it.
    assert fake_model.authorizations == {"Bearer sk-fake-e2e"}
    leaks = [p for p in [*(cs.tmp / "runs").rglob("*"), *cs.home.rglob("*")]
             if p.is_file() and not p.is_symlink() and b"sk-fake-e2e" in p.read_bytes()]
    assert not leaks, leaks
    leftovers = [pid for pid in _codex_pids() if str(cs.tmp) in _environ(pid)]
    assert not leftovers, "codex app-servers left behind"


def _codex_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(cmd) > 1 and cmd[0].endswith(b"/codex") and cmd[1] == b"app-server":
                pids.append(int(proc.name))
    return pids


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(autouse=True)
def _no_stray_app_servers(cs: Any):
    yield
    import os
    import signal

    for pid in _codex_pids():  # only ours: their environment names this test's directory
        if str(cs.tmp) in _environ(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
