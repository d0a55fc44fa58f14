"""Shared plumbing of bench_idle.py and bench_burst.py: a router process from dist/codeswarm.pyz,
a raw socket client, /proc readings and the figure table (value, target, ratio).

Nothing here imports codeswarm: the benchmarks drive the built .pyz exactly like a user would.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
# CODESWARM_BENCH_PYZ: measure another build (e.g. a copy of the "before" .pyz) with the same script;
# CODESWARM_BENCH_PROFILE=FILE: run the router from the source tree under cProfile, writing FILE on exit
PYZ = Path(os.environ.get("CODESWARM_BENCH_PYZ") or ROOT / "dist" / "codeswarm.pyz").resolve()
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROTOCOL = "codeswarm.router.v1"

# A router hook (on the router's PYTHONPATH only) that swaps each worker for a `sleep` placeholder:
# the 1,000-node figures measure the router, 1,000 Python workers do not fit on 2 cores (bench_scale.py).
SLEEP_WORKERS = '''
import subprocess
_orig = subprocess.Popen.__init__
def _init(self, args, *a, **kw):
    env = kw.get("env") or {}
    if isinstance(args, (list, tuple)) and args and args[-1] == "worker" and env.get("CODESWARM_NODE_ID"):
        args = ["sleep", "2147483647"]
    _orig(self, args, *a, **kw)
subprocess.Popen.__init__ = _init
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def pss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    m = re.search(r"^Pss:\s+(\d+)", text, re.M)
    return int(m.group(1)) / 1024 if m else None


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def git_rev() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


class Client:
    """One router connection; events are read with a deadline so a stuck benchmark fails loudly."""

    def __init__(self, sock_path: Path) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(str(sock_path))
        self.buf = b""
        self.closed = False

    def line(self, command: str, payload: dict[str, Any], rid: str | None = None) -> bytes:
        return json.dumps({"protocol": PROTOCOL, "type": "command", "command": command,
                           "request_id": rid or uuid.uuid4().hex, "payload": payload}).encode() + b"\n"

    def send(self, command: str, payload: dict[str, Any], rid: str | None = None) -> str:
        rid = rid or uuid.uuid4().hex
        self.s.sendall(self.line(command, payload, rid))
        return rid

    def events(self, timeout: float = 120.0) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                if raw:
                    yield json.loads(raw)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event in time")
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                continue
            data = self.s.recv(1 << 20)
            if not data:
                self.closed = True
                return
            self.buf += data

    def wait_for(self, pred: Any, timeout: float = 120.0) -> dict[str, Any]:
        for ev in self.events(timeout):
            if pred(ev):
                return ev
        raise ConnectionError("router closed the connection")

    def close(self) -> None:
        self.s.close()


class RouterProc:
    """`codeswarm router run` from the .pyz in a scratch CODESWARM_HOME with a given config."""

    def __init__(self, config: dict[str, Any], *, hook: str | None = None, tmp: Path | None = None) -> None:
        self.tmp = tmp or Path(tempfile.mkdtemp(prefix="cs-bench-"))
        self.home = self.tmp / "home"
        cfg = self.tmp / "config.json"
        cfg.write_text(json.dumps(config))
        self.env = {**os.environ, "CODESWARM_HOME": str(self.home), "CODESWARM_CONFIG": str(cfg)}
        self.router_env = dict(self.env)
        if hook:
            hdir = self.tmp / "hook"
            hdir.mkdir(exist_ok=True)
            (hdir / "sitecustomize.py").write_text(hook)
            self.router_env["PYTHONPATH"] = str(hdir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock = self.home / "router.sock"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> float:
        """Start the router; seconds from spawn to its first answer (a ping)."""
        log = open(self.tmp / "router.log", "ab")
        t0 = time.perf_counter()
        prog, env = [str(PYZ)], self.router_env
        profile = os.environ.get("CODESWARM_BENCH_PROFILE")
        if profile:  # cProfile cannot run a zipapp: the profiled router runs from the source tree
            prog = ["-m", "cProfile", "-o", profile, "-m", "codeswarm"]
            env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, *prog, "router", "run"], env=env,
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                c = Client(self.sock)
            except OSError:
                time.sleep(0.002)
                continue
            try:
                rid = c.send("ping", {})
                c.wait_for(lambda ev: ev.get("event") == "pong" and ev["data"].get("request_id") == rid, 30)
                return time.perf_counter() - t0
            except (OSError, ConnectionError):
                time.sleep(0.002)
            finally:
                c.close()
        raise SystemExit(f"router did not answer within {timeout} s (see {self.tmp}/router.log)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def cli(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, str(PYZ), *args], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"codeswarm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def client(self) -> Client:
        return Client(self.sock)

    def launch(self, nodes: int, provider: str | None = None, prompt: str = "", params: dict[str, Any] | None = None,
               timeout: float = 120) -> tuple[str, str]:
        """Launch and wait until every node's worker runs; returns (swarm_id, job_id)."""
        c = self.client()
        payload: dict[str, Any] = {"nodes": nodes, "system_prompt": prompt}
        if provider:
            payload["provider"] = provider
        if params:
            payload["provider_params"] = params
        rid = c.send("swarm_launch", payload)
        ev = c.wait_for(lambda e: e.get("event") in ("swarm_launched", "command_rejected")
                        and e["data"].get("request_id") == rid, timeout)
        if ev["event"] != "swarm_launched":
            raise SystemExit(f"launch rejected: {ev['data']}")
        sid, job = ev["data"]["swarm_id"], ev["data"]["job_id"]
        running: set[int] = set()
        for e in c.events(timeout):
            if e.get("event") == "node_status" and e["data"].get("swarm_id") == sid and e["data"].get("worker") == "running":
                running.add(e["data"]["node_id"])
                if len(running) == nodes:
                    break
        c.close()
        return sid, job

    def terminate(self, sid: str) -> None:
        c = self.client()
        c.send("swarm_terminate", {"swarm_id": sid, "terminate_params": {"force": True}})
        c.wait_for(lambda e: e.get("event") == "swarm_terminated" and e["data"].get("swarm_id") == sid, 120)
        c.close()

    def kill_workers(self) -> None:
        """Last resort after a failed run: SIGKILL every worker this router started (by pid)."""
        for outbox in self.tmp.glob("runs/*/mailbox/outbox/*.jsonl"):
            try:
                first = json.loads(outbox.read_bytes().split(b"\n", 1)[0])
                os.killpg(int(first["data"]["pid"]), signal.SIGKILL)
            except (ValueError, KeyError, ProcessLookupError, PermissionError, IndexError, OSError):
                pass

    def worker_pids(self, job: str) -> list[int]:
        """The pids the workers wrote in their worker_started lines."""
        pids = []
        for outbox in sorted((self.tmp / "runs" / job / "mailbox" / "outbox").glob("*.jsonl")):
            for raw in outbox.read_bytes().splitlines():
                line = json.loads(raw)
                if line.get("event") == "worker_started":
                    pids.append(int(line["data"]["pid"]))
                    break
        return pids


def launch_first_turns_ms(r: RouterProc, nodes: int, timeout: float = 120) -> float:
    """Launch a mock swarm with a first prompt and time it until every node's first turn_complete
    (the swarm is terminated afterwards; the time excludes that)."""
    c = r.client()
    t0 = time.perf_counter()
    rid = c.send("swarm_launch", {"nodes": nodes, "system_prompt": "hello", "provider": "mock"})
    sid = None
    done: set[int] = set()
    for ev in c.events(timeout):
        d = ev.get("data", {})
        if ev.get("event") == "swarm_launched" and d.get("request_id") == rid:
            sid = d["swarm_id"]
        elif ev.get("event") == "turn_complete" and sid and d.get("swarm_id") == sid:
            done.add(d["node_id"])
            if len(done) == nodes:
                break
    ms = (time.perf_counter() - t0) * 1000
    c.close()
    assert sid is not None
    r.terminate(sid)
    return ms


def mock_config(tmp: Path, **router: Any) -> dict[str, Any]:
    """Local provider, two mock presets: `mock` (no pacing) and `mock-paced` (the default 50 ms)."""
    return {
        "cluster": {"local": {"workspace_root": str(tmp / "runs")}},
        "router": {"inject_timeout_seconds": 300, "worker_heartbeat_timeout_seconds": 600, **router},
        "launch_providers": [
            {"id": "mock", "backend": "local", "defaults": {"worker_mode": "mock", "mock_delay_ms": 0}},
            {"id": "mock-paced", "backend": "local", "defaults": {"worker_mode": "mock", "mock_delay_ms": 50}},
            {"id": "mock-poll", "backend": "local",
             "defaults": {"worker_mode": "mock", "mock_delay_ms": 0, "mailbox_watch": "poll"}},
        ],
    }


class Figures:
    """Collects (name, value, unit, target, op) and prints one table with ratios."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, float | None, str, str, float | None]] = []
        self.notes: list[str] = []

    def add(self, name: str, value: float | None, unit: str = "", op: str = "", target: float | None = None) -> None:
        self.rows.append((name, value, unit, op, target))
        print(f"  .. {name}: {value if value is None else round(value, 3)} {unit}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print(self) -> dict[str, Any]:
        print(f"\n{self.title}  (rev {git_rev()}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())})")
        print(f"pyz: {PYZ}")
        print(f"uptime: {uptime()}")
        print(f"{'figure':64} {'value':>12} {'target':>12} {'ratio':>7}")
        out = {}
        for name, value, unit, op, target in self.rows:
            vtxt = "n/a" if value is None else (f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}")
            ttxt = f"{op} {target:g}" if target is not None else ""
            rtxt, flag = "", ""
            if target is not None and value is not None and target:
                rtxt = f"{value / target:.2f}"
                ok = {"<=": value <= target, ">=": value >= target, "==": value == target}[op]
                flag = "OK" if ok else "MISSED"
            print(f"{name + (' (' + unit + ')' if unit else ''):64} {vtxt:>12} {ttxt:>12} {rtxt:>7} {flag}")
            out[name] = value
        for n in self.notes:
            print(f"note: {n}")
        print(json.dumps(out))
        return out
