"""Personas at launch (issue 8): AGENTS.md and skills in every node workspace before the first turn."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from codeswarm.client import Client
from codeswarm.paths import socket_path
from tests.conftest import Codeswarm


def _ts(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["timestamp"]).timestamp()


def _files(ws: Path) -> dict[str, str]:
    return {p.relative_to(ws).as_posix(): p.read_text() for p in sorted(ws.rglob("*")) if p.is_file()}


def test_agents_md_and_skills_are_in_every_workspace_before_the_first_turn(cs: Codeswarm) -> None:
    md = cs.tmp / "my-persona.md"  # the file name does not matter: it becomes AGENTS.md
    md.write_text("# GPU developer\nProfile before you optimize.\n")
    skills = cs.tmp / "skills"
    (skills / "profiling").mkdir(parents=True)
    (skills / "README.md").write_text("skills index\n")
    (skills / "profiling" / "rocprof.md").write_text("run rocprof --stats\n")
    launched = cs.json("launch", "--nodes", "3", "--prompt", "You are node zero of three.", "--agents-md", str(md),
                       "--skills", str(skills))
    sid, job = launched["swarm_id"], launched["job_id"]
    expected = {
        "AGENTS.md": "# GPU developer\nProfile before you optimize.\n",
        ".agents/skills/README.md": "skills index\n",
        ".agents/skills/profiling/rocprof.md": "run rocprof --stats\n",
    }
    evs = cs.wait_for(lambda evs: sum(e["event"] == "turn_started" for e in evs) == 3, "--swarm", sid)
    for node in range(3):
        ws = cs.tmp / "runs" / job / f"node_{node:02d}"
        files = {k: v for k, v in _files(ws).items() if k in expected or k.startswith(".agents/")}
        assert files == expected, f"node {node}"
        # written before the system prompt (the node's first turn) was even acknowledged
        first_ack = next(e for e in evs if e["event"] == "inject_ack" and e["data"]["node_id"] == node)
        first_turn = next(e for e in evs if e["event"] == "turn_started" and e["data"]["node_id"] == node)
        assert first_ack["seq"] < first_turn["seq"]
        for rel in expected:
            assert (ws / rel).stat().st_mtime <= _ts(first_ack) + 1e-3, (node, rel)
            assert (ws / rel).stat().st_mode & 0o077 == 0  # private to the user


def test_agents_md_alone_writes_no_skills_dir(cs: Codeswarm) -> None:
    md = cs.tmp / "AGENTS.md"
    md.write_text("just the persona")
    launched = cs.json("launch", "--nodes", "2", "--agents-md", str(md))
    for node in range(2):
        ws = cs.tmp / "runs" / launched["job_id"] / f"node_{node:02d}"
        assert (ws / "AGENTS.md").read_text() == "just the persona"
        assert not (ws / ".agents").exists()


def _launch_raw(cs: Codeswarm, payload: dict[str, Any]) -> dict[str, Any]:
    cs.run("list")  # make sure a router runs (autostart)
    with Client(socket_path(cs.home), timeout=30) as client:
        return client.request("swarm_launch", payload)


def test_unsafe_skill_paths_are_rejected(cs: Codeswarm) -> None:
    for bad in ["../escape.md", "ok/../../escape.md", "/etc/cron.d/x", "..\\win.md"]:
        env = _launch_raw(cs, {"nodes": 1, "agents_bundle": {
            "mode": "directory", "agents_md_content": "x",
            "skills_files": [{"path": "fine.md", "content": "ok"}, {"path": bad, "content": "evil"}]}})
        assert env["event"] == "command_rejected", (bad, env)
        assert env["data"]["code"] == "invalid_payload" and "skills_files[1]" in env["data"]["reason"], env
    assert cs.json("list") == {}  # a rejected command has no other effect
    assert not (cs.tmp / "escape.md").exists() and not list(cs.tmp.rglob("escape.md"))


def test_file_mode_bundle_ignores_skills(cs: Codeswarm) -> None:
    env = _launch_raw(cs, {"nodes": 1, "agents_bundle": {
        "mode": "file", "agents_md_content": "file mode", "skills_files": [{"path": "a.md", "content": "a"}]}})
    assert env["event"] == "swarm_launched", env
    ws = cs.tmp / "runs" / env["data"]["job_id"] / "node_00"
    assert (ws / "AGENTS.md").read_text() == "file mode"
    assert not (ws / ".agents").exists()
