"""Issue 12, findings 3, 6 and 10 through the real .pyz: bounded selectors, symlinked skills, and
config and CLI strictness (clear errors, no tracebacks, no waiting out a timeout).

Each test failed on a81cbf6 (run it with CODESWARM_TEST_PYZ=<a81cbf6 build>/codeswarm.pyz).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Codeswarm, _alive, local_config
from tests.integration.test_bad_input import Raw


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]


# ------------------------------------------------------------------ finding 10: config strictness


@pytest.mark.parametrize("router, needle", [
    ({"tcp": {"enabled": "false"}}, "router.tcp: 'enabled' must be true or false, got 'false'"),
    ({"tcp": {"port": 70000}}, "router.tcp: 'port' must be at most 65535, got 70000"),
    ({"tcp": {"host": "0.0.0.0"}}, "router.tcp: 'host' must be a loopback address"),
    ({"poll_interval_seconds": 1e-9}, "router: 'poll_interval_seconds' must be at least 0.01"),
    ({"worker_heartbeat_timeout_seconds": 0}, "router: 'worker_heartbeat_timeout_seconds' must be at least 1"),
])
def test_bad_router_config_is_refused_naming_file_and_key(cs: Codeswarm, router: dict[str, Any], needle: str) -> None:
    cs.write_config(local_config(cs.tmp, **router))
    for args in (["list"], ["router", "run"]):
        proc = cs.run(*args, check=False, timeout=30)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert str(cs.config_path) in proc.stderr and needle in proc.stderr, proc.stderr
        no_traceback(proc)
    assert cs.router_pid() is None  # nothing was started


# ------------------------------------------------------------------ finding 10: CLI strictness


def test_launch_over_1_mib_fails_at_once_client_side(cs: Codeswarm) -> None:
    md = cs.tmp / "AGENTS.md"
    md.write_text("x" * (1 << 20))
    start = time.monotonic()
    proc = cs.run("launch", "--nodes", "1", "--agents-md", str(md), "--timeout", "60", check=False, timeout=90)
    assert time.monotonic() - start < 15  # not the 60 s timeout
    assert proc.returncode == 2 and "the router takes at most 1,048,576 bytes per command" in proc.stderr, proc.stderr
    no_traceback(proc)
    assert cs.json("list") == {}


def test_a_directed_rejection_without_request_id_is_the_answer(cs: Codeswarm) -> None:
    """A router rejecting a line it could not attribute (line_too_long, request_id null) answers the
    client's pending request at once instead of leaving it to time out."""
    from codeswarm.client import Client

    cs.json("list")  # starts the router
    with Client(cs.home / "router.sock", timeout=30) as client:
        client.sock.sendall(b'{"x": "' + b"y" * ((1 << 20) + 10) + b'"}\n')  # what an older client might send
        start = time.monotonic()
        env = client.request("ping", timeout=30)
    assert env["event"] == "command_rejected" and env["data"]["code"] == "line_too_long"
    assert time.monotonic() - start < 5


def test_long_prompts_go_through_a_file_or_stdin(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    big = "p" * (200 << 10)  # over the 128 KiB an argument may carry
    (cs.tmp / "prompt.txt").write_text(big)
    out = cs.json("inject", sid, "--prompt-file", str(cs.tmp / "prompt.txt"), "--wait", "--timeout", "60")
    assert [n["outcome"] for n in out["nodes"]] == ["completed"]
    proc = cs.run("inject", sid, "--prompt", "-", "--wait", "--timeout", "60", "--json", input=big + "-stdin")
    assert [n["outcome"] for n in json.loads(proc.stdout)["nodes"]] == ["completed"]
    acks = [e["data"]["prompt"] for e in cs.events("--swarm", sid) if e["event"] == "inject_ack"]
    assert acks[-2:] == [big, big + "-stdin"]
    both = cs.run("inject", sid, "--prompt", "a", "--prompt-file", str(cs.tmp / "prompt.txt"), check=False)
    assert both.returncode == 2 and "not both" in both.stderr


def test_bad_arguments_and_files_are_clear_errors(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "2").stdout.strip()
    proc = subprocess.run([sys.executable, str(cs.pyz), "inject", sid, "--prompt", b"\xff\xfe".decode("utf-8", "surrogateescape")],
                          env=cs.env, cwd=cs.tmp, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "argument 4 is not valid UTF-8" in proc.stderr, proc.stderr
    no_traceback(proc)
    proc = cs.run("inject", sid, "--nodes", "²", "--prompt", "hi", check=False)
    assert proc.returncode == 3 and "invalid_payload" in proc.stderr, proc.stderr
    no_traceback(proc)
    bad_md = cs.tmp / "AGENTS.md"
    bad_md.write_bytes(b"# ok\n\xff\xfe broken")
    proc = cs.run("launch", "--agents-md", str(bad_md), check=False)
    assert proc.returncode == 2 and "is not valid UTF-8 (byte 5" in proc.stderr, proc.stderr
    no_traceback(proc)
    assert list(cs.json("list")) == [sid]


def test_a_directory_where_the_socket_should_be(cs: Codeswarm) -> None:
    cs.home.mkdir(parents=True)
    (cs.home / "router.sock").mkdir()
    proc = cs.run("list", check=False, timeout=60)
    assert proc.returncode == 1, proc
    assert f"{cs.home / 'router.sock'} is a directory, not a socket" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_socket_replaced_by_a_file_status_and_stop_fall_back_to_the_pid(cs: Codeswarm) -> None:
    cs.json("list")
    pid = cs.router_pid()
    assert pid is not None and _alive(pid)
    sock = cs.home / "router.sock"
    sock.unlink()
    sock.write_text("not a socket")
    status = cs.run("router", "status", check=False)
    assert status.returncode == 1
    assert f"running as pid {pid}" in status.stdout and "is a regular file, not a socket" in status.stdout
    proc = cs.run("list", check=False, timeout=60)
    assert proc.returncode == 1 and f"the router (pid {pid}) holds" in proc.stderr, proc.stderr
    stop = cs.run("router", "stop", check=False, timeout=60)
    assert stop.returncode == 0 and f"router {pid} stopped" in stop.stdout, stop
    assert not _alive(pid)
    assert "not running" in cs.run("router", "status", check=False).stdout


# ------------------------------------------------------------------ finding 3: selector amplification


def test_selector_amplification_is_bounded(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "4").stdout.strip()
    cs.json("inject", sid, "--prompt", "warm", "--wait", "--timeout", "60")
    pid = cs.router_pid()
    raw = Raw(str(cs.home / "router.sock"))
    cases = {
        "r1": ",".join(["0-99999"] * 200),  # the 1.6 KB input: ~1 s and 806 MB before
        "r2": ",".join(["0-99999"] * ((1 << 20) // 8 - 300)),  # a ~1 MiB line of them: OOM before
        "r3": "0-" + "9" * 9,
    }
    for rid, nodes in cases.items():
        start = time.monotonic()
        ev = raw.command("inject", {"swarm_id": sid, "content": "x", "nodes": nodes}, rid)
        # linear: ~0.25 s for the 1 MiB line on an idle 2-core machine; the bound leaves room for load
        assert time.monotonic() - start < (6 if rid == "r2" else 2), rid
        assert ev["event"] == "command_rejected" and ev["data"]["code"] == "invalid_nodes", ev
    assert _rss_kib(pid) < 200 * 1024
    out = cs.json("inject", sid, "--prompt", "still fine", "--nodes", "0,2-3", "--wait", "--timeout", "60")
    assert sorted(n["node_id"] for n in out["nodes"]) == [0, 2, 3]


def test_routed_answer_with_a_huge_selector_is_ignored_quickly(cs: Codeswarm) -> None:
    target = cs.run("launch", "--nodes", "2", "--alias", "b").stdout.strip()
    source = cs.run("launch", "--nodes", "1", "--auto-route").stdout.strip()
    selector = ",".join(["0-99999"] * 450)  # ~3.6 KB, as in the issue: 4.3 s and 1.79 GB before
    start = time.monotonic()
    cs.json("inject", source, "--prompt", f"/swarm[b]/node[{selector}] do it", "--wait", "--timeout", "60")
    evs = cs.wait_for(lambda evs: any(e["event"] == "auto_route_ignored" for e in evs), timeout=30)
    assert time.monotonic() - start < 15
    ignored = [e["data"] for e in evs if e["event"] == "auto_route_ignored"]
    assert "out of range" in ignored[0]["reason"]
    assert _rss_kib(cs.router_pid()) < 200 * 1024
    out = cs.json("inject", target, "--prompt", "alive", "--wait", "--timeout", "60")
    assert len(out["nodes"]) == 2


def _rss_kib(pid: int | None) -> int:
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak RSS: a transient 800 MB list would show here
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# ------------------------------------------------------------------ finding 6: --skills symlinks


def test_skills_symlinks_are_refused_never_copied(cs: Codeswarm) -> None:
    secret = cs.tmp / "secret.txt"
    secret.write_text("private key material")
    skills = cs.tmp / "skills"
    (skills / "sub").mkdir(parents=True)
    (skills / "ok.md").write_text("fine")
    (skills / "sub" / "leak.md").symlink_to(secret)
    proc = cs.run("launch", "--nodes", "1", "--skills", str(skills), check=False)
    assert proc.returncode == 2 and "leak.md is a symlink" in proc.stderr, proc.stderr
    no_traceback(proc)
    assert cs.json("list") == {}
    found = [p for p in (cs.tmp / "runs").rglob("*") if p.is_file() and b"private key" in p.read_bytes()] \
        if (cs.tmp / "runs").exists() else []
    assert found == []


# ------------------------------------------------------------------ finding 1: control over TCP


def test_a_client_cannot_choose_the_executable(cs: Codeswarm) -> None:
    marker = cs.tmp / "the-script-ran"
    evil = cs.tmp / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 5\n")
    evil.chmod(0o755)
    cs.json("list")
    raw = Raw(str(cs.home / "router.sock"))
    attempts = {
        "l1": {"worker_mode": "codex", "codex_path": str(evil)},  # the reported attack, on a mock-only preset
        "l2": {"codex_path": str(evil)},
        "l3": {"claude_cli_path": str(evil), "worker_mode": "claude"},
        "l4": {"sandbox_mode": "danger-full-access"},
        "l5": {"codex_config": "shell_environment_policy.inherit=all"},
    }
    for rid, params in attempts.items():
        ev = raw.command("swarm_launch", {"nodes": 1, "provider_params": params}, rid)
        assert ev["event"] == "command_rejected" and ev["data"]["code"] == "invalid_provider_params", ev
        assert "not settable by clients of preset 'local-mock'" in ev["data"]["reason"], ev
    proc = cs.run("launch", "--param", "worker_mode=codex", check=False)
    assert proc.returncode == 3 and "worker_mode" in proc.stderr and "invalid_provider_params" in proc.stderr
    assert cs.json("list") == {}
    time.sleep(1.0)  # a started worker would have run the script well within this
    assert not marker.exists()
    # what the preset offers still works
    cfg = local_config(cs.tmp)
    cfg["launch_providers"][0]["launch_fields"] = [
        {"key": "mock_delay_ms", "label": "Delay", "type": "number"}]
    cs.write_config(cfg)
    cs.run("router", "stop")
    sid = cs.run("launch", "--param", "mock_delay_ms=1").stdout.strip()
    assert cs.json("status", sid)["node_count"] == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpRaw(Raw):
    def __init__(self, port: int) -> None:  # noqa: D107 - same reader over TCP
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.settimeout(20)
        self.buf = b""


def test_tcp_token_is_required_when_configured(cs: Codeswarm) -> None:
    port, token = _free_port(), "tok-" + "x" * 28
    cs.write_config(local_config(cs.tmp, tcp={"enabled": True, "port": port, "token": token}))
    cs.json("list")
    intruder = TcpRaw(port)
    ev = intruder.command("ping", {}, "p1")
    assert ev["event"] == "command_rejected" and ev["data"]["code"] == "unauthorized", ev
    intruder.send(json.dumps({"protocol": "codeswarm.router.v1", "type": "command", "command": "ping",
                              "request_id": "p2", "auth_token": "wrong-" + "x" * 26}).encode() + b"\n")
    assert intruder.answer("p2")["data"]["code"] == "unauthorized"
    ev = intruder.command("swarm_launch", {"nodes": 1}, "p3")
    assert ev["data"]["code"] == "unauthorized" and cs.json("list") == {}
    friend = TcpRaw(port)
    friend.send(json.dumps({"protocol": "codeswarm.router.v1", "type": "command", "command": "ping",
                            "request_id": "f1", "auth_token": token}).encode() + b"\n")
    assert friend.answer("f1")["event"] == "pong"
    assert friend.command("swarm_list", {}, "f2")["event"] == "swarm_list"  # the connection stays admitted
    assert cs.run("list").returncode == 0  # the Unix socket needs no token (0600 in a 0700 dir)


# ------------------------------------------------------------------ finding 4: the state dir lock


def test_deleting_router_pid_does_not_let_a_second_router_start(cs: Codeswarm) -> None:
    cs.json("list")
    first = cs.router_pid()
    assert first is not None
    (cs.home / "router.pid").unlink()
    try:
        second = subprocess.Popen([sys.executable, str(cs.pyz), "router", "run"], env=cs.env, cwd=cs.tmp,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            raise AssertionError("a second router started on the same state dir") from None
        assert second.returncode == 2 and "another router (pid" in err and "already runs on" in err, err
        assert _alive(first)
        assert "running" in cs.run("router", "status").stdout
        stop = cs.run("router", "stop")  # found through the lock holder, without router.pid
        assert f"router {first} stopped" in stop.stdout and not _alive(first)
    finally:
        if _alive(first):  # the fixture finds routers through router.pid, which is gone
            os.kill(first, signal.SIGKILL)


# ------------------------------------------------------------------ finding 6: outbox symlinks


def test_an_outbox_replaced_by_a_symlink_is_refused_and_reported(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    cs.json("inject", sid, "--prompt", "warm", "--wait", "--timeout", "60")
    job = cs.json("status", sid)["job_id"]
    outbox = cs.tmp / "runs" / job / "mailbox" / "outbox" / f"{job}_00.jsonl"
    secret = cs.tmp / "secret-file"
    secret.write_text('{"seq": 99999, "ts": 0, "type": "lifecycle", "event": "worker_error", '
                      '"data": {"message": "SECRET-LINE", "fatal": false}}\nroot:x:0:0:SECRET-ROOT:/root:/bin/bash\n')
    outbox.rename(outbox.with_name(outbox.name + ".moved"))
    outbox.symlink_to(secret)
    evs = cs.wait_for(lambda evs: any(e["event"] == "router_warning" and str(outbox) in e["data"].get("message", "")
                                      for e in evs), timeout=30)
    warning = next(e for e in evs if e["event"] == "router_warning" and str(outbox) in e["data"]["message"])
    assert "symlink" in warning["data"]["message"]
    time.sleep(1.0)  # more polls of the refused file: still one warning, nothing read
    text = cs.run("events", "--since", "0", "--json").stdout
    assert "SECRET-LINE" not in text and "SECRET-ROOT" not in text
    assert sum(1 for line in text.splitlines() if str(outbox) in line) == 1
