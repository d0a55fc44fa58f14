"""`codeswarm events` and `codeswarm spend` against a router that rejects its subscribe (an internal error while replaying,
PROTOCOL 3.3: command_rejected is a logged event with the request's id, not a directed one). The
command must end with the rejection and a non-zero exit, not hold the event and wait forever."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import PYZ


def _one_rejecting_router(sock_path: Path, ready: threading.Event, seen: list[dict]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(str(sock_path))
        srv.listen(1)
        ready.set()
        srv.settimeout(30)
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while b"\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            cmd = json.loads(buf.split(b"\n", 1)[0])
            seen.append(cmd)
            rejected = {"protocol": "codeswarm.router.v1", "type": "event", "event": "command_rejected", "seq": 7,
                        "timestamp": "2026-12-03T00:00:00.000000Z",
                        "data": {"request_id": cmd["request_id"], "command": "subscribe", "code": "internal_error",
                                 "reason": "unexpected router error (TypeError); the router log has the details"}}
            conn.sendall(json.dumps(rejected).encode() + b"\n")
            conn.settimeout(30)
            while conn.recv(65536):  # until the client hangs up
                pass


@pytest.mark.parametrize("args", [["events", "--swarm", "s1"], ["spend", "--swarm", "s1"]])
def test_a_subscribing_command_ends_with_the_rejection_of_its_subscribe(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    ready, seen = threading.Event(), []
    router = threading.Thread(target=_one_rejecting_router, args=(home / "router.sock", ready, seen), daemon=True)
    router.start()
    assert ready.wait(10)
    proc = subprocess.run([sys.executable, str(PYZ), *args, "--no-autostart"],
                          env={**os.environ, "CODESWARM_HOME": str(home)}, capture_output=True, text=True, timeout=60)
    router.join(10)
    assert seen and seen[0]["command"] == "subscribe" and seen[0]["payload"]["swarm_id"] == "s1"
    assert proc.returncode != 0, proc.stdout
    assert "unexpected router error (TypeError)" in proc.stderr and "internal_error" in proc.stderr, proc.stderr
