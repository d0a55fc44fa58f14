"""Scale benchmark: one router (the real dist/codeswarm.pyz) with a 1,000-node local swarm.

    python3 benchmarks/bench_scale.py [--nodes 1000] [--rate 5000] [--seconds 20] [--backlog 40]

Method (printed with the figures). 1,000 real workers (a Python process each, ~30 MB) do not fit
on a 2-core machine, so the swarm is launched through the router and the local provider as usual,
but a `sitecustomize` hook (on PYTHONPATH of the router only) swaps the worker command for
`sleep` placeholders: the provider really starts, tracks (pid + start time) and stops 1,000
processes. The workers' side of the mailbox is played by this script: one writer that appends
worker lines to the 1,000 outboxes (worker_started, turn_accepted, codex-dialect runtime lines,
heartbeats) and reads the prompts from the inboxes, exactly in the worker's file format. The
router's side is untouched: it polls 1,000 outboxes, normalizes, logs, fsyncs and fans out.

Figures: router RSS; router CPU idle (no writes) and idle with heartbeats every 10 s per node
(/proc/<pid>/stat utime+stime); outbox polling cost (syscalls/s from `strace -c -f`, if
installed); list/status latency; CPU while the nodes stream; p99 outbox write -> subscriber
receipt at --rate lines/s; ingest of a backlog (events/s). Targets: RSS < 300 MB, idle CPU < 2 %,
ingest >= 20,000 events/s, p99 < 100 ms at 5,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codeswarm.mailbox import inbox_path, outbox_path  # noqa: E402

PYZ = ROOT / "dist" / "codeswarm.pyz"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SITECUSTOMIZE = '''
import os, subprocess
_orig = subprocess.Popen.__init__
def _init(self, args, *a, **kw):
    env = kw.get("env") or {}
    if isinstance(args, (list, tuple)) and args and args[-1] == "worker" and env.get("CODESWARM_NODE_ID"):
        args = ["sleep", "2147483647"]  # the placeholder process of a simulated node
    _orig(self, args, *a, **kw)
subprocess.Popen.__init__ = _init
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> tuple[float, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]
    return rss, hwm


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="cs-scale-"))
        self.home = self.tmp / "home"
        hook = self.tmp / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        cfg = self.tmp / "config.json"
        cfg.write_text(json.dumps({
            "cluster": {"local": {"workspace_root": str(self.tmp / "runs")}},
            "router": {"inject_timeout_seconds": 600, "worker_heartbeat_timeout_seconds": 600},
            "launch_providers": [{"id": "sim", "backend": "local",
                                  "defaults": {"worker_mode": "mock", "approval_policy": "never"}}],
        }))
        self.env = {**os.environ, "CODESWARM_HOME": str(self.home), "CODESWARM_CONFIG": str(cfg)}
        self.router_env = {**self.env, "PYTHONPATH": str(hook)}
        self.router: subprocess.Popen[bytes] | None = None
        self.fds: dict[int, int] = {}
        self.seq: dict[int, int] = {}
        self.out: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing

    def cli(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, str(PYZ), *args], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"codeswarm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def start_router(self) -> int:
        log = open(self.tmp / "router.log", "ab")
        # cProfile cannot run a zipapp: the profiled router runs from the source tree. Otherwise the
        # router is the .pyz's own code (before, the source tree on PYTHONPATH shadowed it: with
        # PYTHONDONTWRITEBYTECODE every start compiled the router's modules, part of the ingest figure).
        prog = ["-m", "cProfile", "-o", self.args.profile, "-m", "codeswarm"] if self.args.profile else [str(PYZ)]
        env = self.router_env
        if self.args.profile:
            env = {**env, "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{ROOT}"}
        self.router = subprocess.Popen([sys.executable, *prog, "router", "run"], env=env,
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.head_seq()
                return self.router.pid
            except OSError:
                time.sleep(0.05)
        raise SystemExit("router did not start")

    def stop_router(self) -> None:
        assert self.router is not None
        self.router.send_signal(signal.SIGTERM)
        self.router.wait(60)

    def request(self, command: str, payload: dict[str, Any]) -> dict[str, Any]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(self.home / "router.sock"))
        s.sendall(json.dumps({"protocol": "codeswarm.router.v1", "type": "command", "command": command,
                              "request_id": "b", "payload": payload}).encode() + b"\n")
        buf = b""
        try:
            while True:
                while b"\n" not in buf:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                ev = json.loads(line)
                if ev.get("directed") and ev["data"].get("request_id") == "b":
                    return ev
        finally:
            s.close()

    def head_seq(self) -> int:
        return int(self.request("ping", {})["data"]["head_seq"])

    def write(self, node: int, obj: dict[str, Any]) -> None:
        self.seq[node] += 1
        obj["seq"] = self.seq[node]
        os.write(self.fds[node], json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def base(self, node: int, iid: str | None, kind: str) -> dict[str, Any]:
        return {"seq": 0, "ts": time.time(), "job_id": self.job, "node_id": node, "injection_id": iid, "type": kind}

    def lifecycle(self, node: int, event: str, data: dict[str, Any], iid: str | None = None) -> None:
        self.write(node, {**self.base(node, iid, "lifecycle"), "event": event, "data": data})

    def runtime(self, node: int, iid: str | None, payload: dict[str, Any]) -> None:
        self.write(node, {**self.base(node, iid, "runtime"), "runtime": "mock", "payload": payload})

    def delta(self, node: int, iid: str, text: str) -> None:
        self.runtime(node, iid, {"method": "codex/event/agent_message_content_delta",
                                 "params": {"msg": {"type": "agent_message_content_delta", "delta": text}}})

    def cpu_over(self, seconds: float, during: Any = None) -> float:
        pid = self.router.pid  # type: ignore[union-attr]
        c0, t0 = cpu_seconds(pid), time.monotonic()
        if during is not None:
            during(seconds)
        else:
            time.sleep(seconds)
        return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

    # ------------------------------------------------------------------ phases

    def launch(self) -> None:
        n = self.args.nodes
        self.start_router()
        t0 = time.perf_counter()
        launched = json.loads(self.cli("launch", "--nodes", str(n), "--json"))
        self.out["launch_cli_s"] = time.perf_counter() - t0
        self.sid, self.job = launched["swarm_id"], launched["job_id"]
        snap = json.loads((self.home / "swarms" / f"{self.sid}.json").read_text())
        self.root = Path(snap["job"]["swarm_root"])
        self.pids = [p["pid"] for p in snap["job"]["extra"]["procs"]]
        for node in range(n):
            self.fds[node] = os.open(outbox_path(self.root, self.job, node), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self.seq[node] = 0
        t1 = time.perf_counter()
        for node in range(n):
            self.lifecycle(node, "worker_started", {"hostname": platform.node(), "pid": self.pids[node],
                                                    "runtime": "mock", "worker_protocol": 1})
        self.wait_status(lambda st: all(x.get("worker") == "running" for x in st["nodes"]), 120)
        self.out["all_nodes_running_s"] = time.perf_counter() - t1

    def wait_status(self, pred: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.request("swarm_status", {"swarm_id": self.sid})["data"]
            if pred(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.2)

    def idle(self) -> None:
        time.sleep(6)  # polling backs off to its idle interval
        self.out["rss_idle_mb"], _ = rss_mb(self.router.pid)  # type: ignore[union-attr]
        self.out["cpu_idle_pct"] = self.cpu_over(self.args.idle_seconds)

        def heartbeats(seconds: float) -> None:  # every node every 10 s, spread evenly
            n, end = self.args.nodes, time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                self.lifecycle(i % n, "heartbeat", {"busy": False})
                i += 1
                time.sleep(10.0 / n)

        self.out["cpu_idle_heartbeats_pct"] = self.cpu_over(self.args.idle_seconds, heartbeats)
        if shutil.which("strace"):
            time.sleep(6)
            tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(self.router.pid),  # type: ignore[union-attr]
                                       "-o", str(self.tmp / "strace.txt")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(10)
            tracer.send_signal(signal.SIGINT)  # strace detaches and writes its summary
            tracer.wait(30)
            text = (self.tmp / "strace.txt").read_text()
            calls = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$",
                                                                   text, re.M)}
            self.out["syscalls_per_s_idle"] = sum(calls.values()) / 10
            self.out["stat_calls_per_s_idle"] = sum(v for k, v in calls.items() if "stat" in k) / 10
            self.out["openat_per_s_idle"] = calls.get("openat", 0) / 10

    def list_status(self) -> None:
        for name, args in (("list", ("list", "--json")), ("status", ("status", self.sid, "--json"))):
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                self.cli(*args)
                times.append((time.perf_counter() - t0) * 1000)
            self.out[f"{name}_p50_ms"] = statistics.median(times)

    def inject(self) -> dict[int, str]:
        """Inject into every node; the simulated workers accept (turn_accepted + turn/started)."""
        # the CLI returns once every node reported turn_accepted: play the workers meanwhile
        cli = subprocess.Popen([sys.executable, str(PYZ), "inject", self.sid, "--prompt", "stream please", "--json",
                                "--timeout", "120"], env=self.env, stdout=subprocess.PIPE, text=True)
        iids: dict[int, str] = {}
        deadline = time.monotonic() + 120
        while len(iids) < self.args.nodes and time.monotonic() < deadline:
            for node in range(self.args.nodes):  # read the prompt as a worker does: from its inbox
                if node in iids:
                    continue
                try:
                    raw = inbox_path(self.root, self.job, node).read_bytes()
                except FileNotFoundError:
                    continue
                if not raw.endswith(b"\n"):
                    continue
                iid = json.loads(raw.splitlines()[-1])["injection_id"]
                iids[node] = iid
                self.lifecycle(node, "turn_accepted", {"queued": False}, iid)
                self.runtime(node, iid, {"method": "turn/started", "params": {
                    "threadId": f"t{node}", "turn": {"id": "turn-1", "status": "inProgress"}}})
            time.sleep(0.01)
        out, _ = cli.communicate(timeout=120)
        inj = json.loads(out)
        assert {n["node_id"]: n["injection_id"] for n in inj["nodes"]} == iids
        assert all(n["outcome"] in ("delivered", "started") for n in inj["nodes"]), inj
        return iids

    def stream(self, iids: dict[int, str]) -> None:
        n, rate, seconds = self.args.nodes, self.args.rate, self.args.seconds
        sub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sub.connect(str(self.home / "router.sock"))
        sub.sendall(json.dumps({"protocol": "codeswarm.router.v1", "type": "command", "command": "subscribe",
                                "request_id": "s", "payload": {"swarm_id": self.sid}}).encode() + b"\n")
        latencies: list[float] = []
        stop = threading.Event()

        def reader() -> None:
            buf = b""
            while not stop.is_set() or len(latencies) < sent[0]:
                data = sub.recv(1 << 20)
                if not data:
                    return
                now = time.time()
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    i = line.find(b'"content":"t=')
                    if i >= 0:
                        latencies.append((now - float(line[i + 13: line.index(b'"', i + 13)])) * 1000)

        sent = [0]
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        time.sleep(0.5)
        interval = 1.0 / rate

        def run(duration: float) -> None:
            t_start = time.perf_counter()
            i = 0
            while time.perf_counter() - t_start < duration:
                node = i % n
                self.delta(node, iids[node], f"t={time.time():.6f}")
                i += 1
                sent[0] += 1
                delay = t_start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

        self.out["cpu_streaming_pct"] = self.cpu_over(seconds, run)
        self.out["stream_rate_per_s"] = sent[0] / seconds
        stop.set()
        th.join(timeout=15)
        sub.close()
        self.out["latency_sent"] = sent[0]
        self.out["latency_received"] = len(latencies)
        self.out["latency_p50_ms"] = statistics.median(latencies)
        self.out["latency_p99_ms"] = pct(latencies, 99)
        self.out["rss_after_stream_mb"], _ = rss_mb(self.router.pid)  # type: ignore[union-attr]
        for node in range(n):
            self.runtime(node, iids[node], {"method": "turn/completed", "params": {
                "threadId": f"t{node}", "turn": {"id": "turn-1", "status": "completed", "error": None}}})
        self.wait_status(lambda st: not any(x.get("busy") for x in st["nodes"]), 60)

    def ingest(self, iids: dict[int, str]) -> None:
        """A backlog written while the router is down, read at start-up."""
        n, per = self.args.nodes, self.args.backlog
        start = self.head_seq()
        self.stop_router()
        for node in range(n):
            for k in range(per):
                self.delta(node, iids[node], f"backlog {k} ")
        total = n * per
        t0 = time.perf_counter()
        self.start_router()
        while self.head_seq() - start < total:
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        self.out["ingest_events"] = total
        self.out["ingest_seconds_incl_startup"] = elapsed
        self.out["ingest_events_per_s"] = total / elapsed
        self.out["rss_after_ingest_mb"] = rss_mb(self.router.pid)[1]  # type: ignore[union-attr]
        self.out["rss_max_mb"] = max(self.out["rss_idle_mb"], self.out["rss_after_stream_mb"],
                                     self.out["rss_after_ingest_mb"])

    def cleanup(self) -> None:
        try:
            if self.router is not None and self.router.poll() is None:
                subprocess.run([sys.executable, str(PYZ), "terminate", self.sid, "--force", "--wait", "--timeout",
                                "60"], env=self.env, capture_output=True, timeout=90)
                self.stop_router()
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            print(f"cleanup: {exc}", file=sys.stderr)
        for pid in getattr(self, "pids", []):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for fd in self.fds.values():
            os.close(fd)
        if self.router is not None and self.router.poll() is None:
            self.router.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024  # type: ignore[union-attr]
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} MiB RAM, {platform.platform()}, Python {platform.python_version()}"


def log_growth() -> None:
    """Bytes per logged event for mock turns (a real 4-node swarm, 5 turns per node per profile)."""
    import collections

    for prompt in ("Summarize the repo", "[mock:commands=3][mock:long=2000] Fix the failing test"):
        tmp = Path(tempfile.mkdtemp(prefix="cs-growth-"))
        cfg = tmp / "config.json"
        cfg.write_text(json.dumps({
            "cluster": {"local": {"workspace_root": str(tmp / "runs")}},
            "launch_providers": [{"id": "mock", "backend": "local", "defaults": {"worker_mode": "mock"}}]}))
        env = {**os.environ, "CODESWARM_HOME": str(tmp / "home"), "CODESWARM_CONFIG": str(cfg)}

        def cli(*args: str) -> str:
            return subprocess.run([sys.executable, str(PYZ), *args], env=env, capture_output=True, text=True,
                                  check=True).stdout

        def log_lines() -> list[bytes]:
            return [line for p in sorted((tmp / "home" / "events").glob("*.jsonl")) for line in p.read_bytes().splitlines()]

        try:
            sid = cli("launch", "--nodes", "4").strip()
            cli("inject", sid, "--prompt", "warm", "--wait")
            cli("router", "stop")
            skip = len(log_lines())
            outbox0 = sum(p.stat().st_size for p in tmp.glob("runs/*/mailbox/outbox/*.jsonl"))
            for _ in range(5):
                cli("inject", sid, "--prompt", prompt, "--wait")
            cli("router", "stop")
            lines = log_lines()[skip:]
            outbox = sum(p.stat().st_size for p in tmp.glob("runs/*/mailbox/outbox/*.jsonl")) - outbox0
            size = sum(len(x) + 1 for x in lines)
            kinds = collections.Counter(json.loads(x)["event"] for x in lines)
            print(f"{prompt!r}: {len(lines) / 20:.1f} events/turn, {size / len(lines):.0f} bytes/event, "
                  f"{size / 20 / 1000:.1f} KB log/turn, {outbox / 20 / 1000:.1f} KB outbox/turn; {dict(kinds)}")
        finally:
            for snap in (tmp / "home" / "swarms").glob("*.json"):
                for proc in json.loads(snap.read_text())["job"]["extra"].get("procs", []):
                    try:
                        os.killpg(proc["pid"], signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=5000, help="streamed lines/s across all nodes")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of the streaming phase")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--backlog", type=int, default=40, help="backlog lines per node for the ingest phase")
    ap.add_argument("--profile", help="run the router under cProfile, writing this file (streaming phase only)")
    ap.add_argument("--log-growth", action="store_true", help="only measure bytes per event of mock turns")
    args = ap.parse_args()
    if not PYZ.exists():
        subprocess.run([str(ROOT / "build.sh")], check=True)
    if args.log_growth:
        log_growth()
        return
    b = Bench(args)
    try:
        b.launch()
        b.idle()
        b.list_status()
        iids = b.inject()
        b.stream(iids)
        if args.profile:
            b.stop_router()  # the profile covers start-up, idle and streaming
            return
        b.ingest(iids)
    finally:
        b.cleanup()
    print(f"machine: {machine()}")
    print(f"method: {args.nodes}-node local swarm through the real router; sleep placeholders for the worker "
          f"processes; this script writes the outboxes in the worker's format")
    targets = {"rss_max_mb": ("<", 300), "cpu_idle_pct": ("<", 2), "ingest_events_per_s": (">=", 20000),
               "latency_p99_ms": ("<", 100)}
    for key, value in b.out.items():
        line = f"{key:30} {value:12.2f}"
        if key in targets:
            op, goal = targets[key]
            ok = value < goal if op == "<" else value >= goal
            line += f"   target {op} {goal}  ratio {value / goal:.2f}  {'OK' if ok else 'MISSED'}"
        print(line)
    print(json.dumps(b.out))


if __name__ == "__main__":
    main()
