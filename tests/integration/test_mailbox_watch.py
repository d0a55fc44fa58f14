"""How a worker learns of a prompt (issue 13), with real worker processes from the real .pyz:

- a local filesystem: inotify (the default), and the lean worker for the mock runtime;
- `mailbox_watch: poll` (the config switch): polling on the same filesystem;
- a FUSE mount (bindfs) where inotify is shown to be blind to writes made behind the mount, as
  on NFS/Lustre/GPFS where the router writes from another host: the worker detects the
  filesystem (statfs f_type) and polls, and the prompt still arrives.
Waits are event-driven: an inotify watch on the (local) outbox, with a deadline.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codeswarm.fswatch import AppendWatcher, choose_mode
from codeswarm.mailbox import append_line, inbox_path, outbox_path, prepare_swarm_root
from tests.conftest import Codeswarm, local_config

STRICT = os.environ.get("CODESWARM_TEST_STRICT") == "1"


def outbox_lines(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: the worker may be mid-write, so a last piece without its newline waits."""
    try:
        complete = path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return []
    return [json.loads(raw) for raw in complete if raw.strip()]


def wait_for_line(path: Path, pred: Any, timeout: float = 30) -> dict[str, Any]:
    """Block on inotify (path must be on a local filesystem) until a line matches."""
    w = AppendWatcher()
    try:
        assert w.add("out", path)
        deadline = time.monotonic() + timeout
        while True:
            for line in outbox_lines(path):
                if pred(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line in {path} within {timeout} s: {outbox_lines(path)[-3:]}")
            if select.select([w.fileno()], [], [], left)[0]:
                w.changed()
    finally:
        w.close()


def started(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return next(ln["data"] for ln in lines if ln.get("event") == "worker_started")


def rss_kb(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------------------- through the router


def test_local_swarm_uses_inotify_and_lean_workers(cs: Codeswarm) -> None:
    cs.write_config(local_config(cs.tmp))
    launched = cs.json("launch", "--nodes", "2")
    out = cs.json("inject", launched["swarm_id"], "--prompt", "hi", "--wait", "--timeout", "60")
    assert all(n["outcome"] == "completed" for n in out["nodes"])
    root = cs.tmp / "runs" / launched["job_id"]
    for node in (0, 1):
        info = started(outbox_lines(outbox_path(root, launched["job_id"], node)))
        assert info["mailbox_watch"] == "inotify" and "local filesystem" in info["mailbox_watch_reason"]
        pid = info["pid"]
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "orjson" not in maps  # the lean worker: stdlib json, no trio, no click (see codec.py)
        assert rss_kb(pid) <= 15 * 1024, f"idle mock worker RSS {rss_kb(pid)} kB"
    cs.run("terminate", launched["swarm_id"], "--wait")


def test_poll_switch_still_delivers(cs: Codeswarm) -> None:
    config = local_config(cs.tmp)
    config["launch_providers"].append({"id": "local-mock-poll", "label": "Local (mock, polling)", "backend": "local",
                                       "defaults": {"worker_mode": "mock", "mock_delay_ms": 5, "mailbox_watch": "poll"}})
    cs.write_config(config)
    launched = cs.json("launch", "--nodes", "1", "--provider", "local-mock-poll")
    out = cs.json("inject", launched["swarm_id"], "--prompt", "hi", "--wait", "--timeout", "60")
    assert out["nodes"][0]["outcome"] == "completed"
    info = started(outbox_lines(outbox_path(cs.tmp / "runs" / launched["job_id"], launched["job_id"], 0)))
    assert info["mailbox_watch"] == "poll" and info["mailbox_watch_reason"] == "mailbox_watch=poll"
    cs.run("terminate", launched["swarm_id"], "--wait")


def test_router_follows_local_outboxes_with_inotify_and_the_switch_forces_polling(cs: Codeswarm) -> None:
    cs.write_config(local_config(cs.tmp))
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    assert cs.json("inject", sid, "--prompt", "hi", "--wait", "--timeout", "60")["nodes"][0]["outcome"] == "completed"
    assert ": inotify (local filesystem" in (cs.home / "router.log").read_text()
    cs.run("router", "stop")
    cs.write_config(local_config(cs.tmp, mailbox_watch="poll"))
    launched = cs.json("launch", "--nodes", "1")
    out = cs.json("inject", launched["swarm_id"], "--prompt", "hi", "--wait", "--timeout", "60")
    assert out["nodes"][0]["outcome"] == "completed"
    assert ": poll (mailbox_watch=poll)" in (cs.home / "router.log").read_text()
    info = started(outbox_lines(outbox_path(cs.tmp / "runs" / launched["job_id"], launched["job_id"], 0)))
    assert info["mailbox_watch"] == "poll"  # the router's switch reaches the local workers too
    cs.run("terminate", launched["swarm_id"], "--wait")


# ---------------------------------------------------------------------------- a blind filesystem


@pytest.fixture
def fuse_mount(tmp_path: Path) -> Any:
    """bindfs: <tmp>/mnt mirrors <tmp>/backing through FUSE. Writes to backing/ bypass the mount,
    like another NFS client's writes: the kernel raises no inotify event on the mount for them."""
    if shutil.which("bindfs") is None or not os.path.exists("/dev/fuse"):
        if STRICT:
            pytest.fail("bindfs and /dev/fuse are needed (scripts/test.sh installs bindfs)")
        pytest.skip("bindfs or /dev/fuse missing")
    backing, mnt = tmp_path / "backing", tmp_path / "mnt"
    backing.mkdir()
    mnt.mkdir()
    # attr_timeout=0: every open asks the server for the size, as NFS's close-to-open consistency does
    subprocess.run(["bindfs", "--no-allow-other", "-o", "attr_timeout=0,entry_timeout=0", str(backing), str(mnt)],
                   check=True)
    try:
        yield backing, mnt
    finally:
        umount = shutil.which("fusermount3") or shutil.which("fusermount")
        subprocess.run([umount, "-u", str(mnt)] if umount else ["umount", str(mnt)], check=False)


def test_inotify_is_blind_on_fuse_so_the_worker_polls(fuse_mount: tuple[Path, Path], pyz: Path,
                                                      tmp_path: Path) -> None:
    backing, mnt = fuse_mount
    # 1. the blindness itself: a watch on the mount misses a write behind it, sees one through it
    (backing / "probe").write_bytes(b"")
    w = AppendWatcher()
    try:
        assert w.add("probe", mnt / "probe")
        with open(backing / "probe", "ab") as f:
            f.write(b"from another host\n")
        assert w.changed() == set()
        assert (mnt / "probe").read_bytes() == b"from another host\n"  # visible, yet no event
        with open(mnt / "probe", "ab") as f:
            f.write(b"through the mount\n")
        assert w.changed() == {"probe"}
    finally:
        w.close()
    choice = choose_mode(mnt)
    assert choice.mode == "poll" and "fuse" in choice.reason

    # 2. a real worker on the mount picks up a prompt written behind it
    prepare_swarm_root(mnt / "swarm", 1)
    env = {**os.environ, "CODESWARM_JOB_ID": "j", "CODESWARM_NODE_ID": "0",
           "CODESWARM_SWARM_ROOT": str(mnt / "swarm"), "CODESWARM_WORKER_MODE": "mock"}
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, str(pyz), "worker"], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        out = outbox_path(backing / "swarm", "j", 0)  # read on the local side: inotify works there
        info = wait_for_line(out, lambda ln: ln.get("event") == "worker_started")["data"]
        assert info["mailbox_watch"] == "poll" and "fuse" in info["mailbox_watch_reason"]
        t0 = time.monotonic()
        append_line(inbox_path(backing / "swarm", "j", 0), {"type": "user", "injection_id": "i1",
                                                            "content": "written behind the mount"})
        wait_for_line(out, lambda ln: ln.get("event") == "turn_accepted" and ln.get("injection_id") == "i1")
        assert time.monotonic() - t0 < 5  # polled within ~0.2 s; generous for a loaded machine
        wait_for_line(out, lambda ln: ln.get("payload", {}).get("method") == "turn/completed")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        log.close()
    assert outbox_lines(outbox_path(backing / "swarm", "j", 0))[-1]["event"] == "worker_exited"
