"""The state dir on a full filesystem and on a read-only one (a small tmpfs; needs root).

Disk full while events stream: the router holds the events in memory, tells connected clients
(directed router_warning), does not die, and writes everything once space returns (a logged
router_warning says so); nothing is lost or duplicated. Read-only: every command fails with a
one-line message and exit code 1, no traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import Codeswarm, _alive
from tests.faults.conftest import assert_log_consistent
from tests.integration.test_crash_recovery import actual_from_log, expected_from_outboxes


def use_home(cs: Codeswarm, home: Path) -> None:
    cs.home = home
    cs.env["CODESWARM_HOME"] = str(home)


def fill(fs: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the filesystem with a filler file."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
        except OSError:
            pass
    return filler


def _read_all(sock: socket.socket, into: bytearray) -> None:
    try:
        while data := sock.recv(1 << 20):
            into += data
    except OSError:
        pass


def test_disk_full_while_events_stream(tmpfs: Any, cs: Codeswarm) -> None:
    fs = tmpfs("4m")
    use_home(cs, fs / "home")  # the state dir only: the workspaces (outboxes) stay on the normal disk
    launched = cs.json("launch", "--nodes", "2")
    sid, job = launched["swarm_id"], launched["job_id"]
    cs.json("inject", sid, "--prompt", "warm up", "--wait", "--timeout", "60")
    pid = cs.router_pid()
    # a subscriber that is connected when the disk fills
    follower = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    follower.connect(str(cs.home / "router.sock"))
    follower.sendall(json.dumps({"protocol": "codeswarm.router.v1", "type": "command", "command": "subscribe",
                                 "request_id": "sub", "payload": {}}).encode() + b"\n")
    got = bytearray()
    reader = threading.Thread(target=_read_all, args=(follower, got), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while b'"subscribed"' not in got:
            assert time.monotonic() < deadline, "no subscribed answer"
            time.sleep(0.02)
        filler = fill(fs, 16 << 10)
        proc = cs.run("inject", sid, "--prompt", "[mock:firehose=2000] on a full disk", "--wait", "--timeout", "4",
                      "--json", check=False)
        assert proc.returncode != 0, "the inject cannot be acknowledged while its ack cannot be logged"
        assert "Traceback" not in proc.stderr
        assert pid is not None and _alive(pid) and cs.router_pid() == pid, "the router is still up"
        filler.unlink()  # space returns
        evs = cs.wait_for(lambda es: sum(1 for e in es if e["event"] == "turn_complete") >= 4
                          and any(e["event"] == "router_warning" for e in es), timeout=40)
    finally:
        follower.close()
        reader.join(5)
    out = bytes(got)
    assert cs.router_pid() == pid and _alive(pid), "the same router held on"
    told = [json.loads(x) for x in out.splitlines() if b"event_log_write_failed" in x]
    assert told and told[0].get("directed"), "a connected client was told the log cannot be written"
    warns = [e["data"] for e in evs if e["event"] == "router_warning"]
    assert any(w.get("error_code") == "event_log_recovered" for w in warns), warns
    assert_log_consistent(evs)
    mine = [e for e in evs if e["data"].get("swarm_id") == sid]
    assert actual_from_log(mine, sid, 2) == expected_from_outboxes(cs.tmp / "runs", job, 2)
    again = cs.json("inject", sid, "--prompt", "after", "--wait", "--timeout", "60")
    assert [n["outcome"] for n in again["nodes"]] == ["completed", "completed"]


def test_read_only_state_dir(tmpfs: Any, cs: Codeswarm) -> None:
    fs = tmpfs("4m")
    use_home(cs, fs / "home")
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    cs.json("inject", sid, "--prompt", "hello", "--wait", "--timeout", "60")
    cs.run("router", "stop")
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    try:
        for args in (["list"], ["status", sid], ["router", "start"], ["router", "run"],
                     ["inject", sid, "--prompt", "x"]):
            proc = cs.run(*args, check=False, timeout=30)
            assert proc.returncode == 1, (args, proc.returncode, proc.stderr)
            assert "Traceback" not in proc.stderr
            assert "Read-only file system" in proc.stderr and str(cs.home) in proc.stderr, proc.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    # nothing was damaged: once writable, the same state comes back
    assert cs.json("status", sid)["state"] == "running"


def test_read_only_state_dir_that_does_not_exist_yet(tmpfs: Any, cs: Codeswarm) -> None:
    fs = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    use_home(cs, fs / "home")
    proc = cs.run("list", check=False, timeout=30)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot use the state dir" in proc.stderr
