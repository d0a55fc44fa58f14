"""Many clients: socket subscribers, WebSocket subscribers (through `codeswarm web`) and one consumer
that never reads, on the real dist/codeswarm.pyz.

    python3 benchmarks/bench_clients.py [--sockets 100] [--websockets 10] [--rate 2000] [--seconds 30]

A 4-node local mock swarm gives real injection ids; then a writer process appends assistant deltas
to the 4 outboxes at --rate lines/s (each carries its write time and --pad bytes), as a firehose
would. Every subscriber measures write -> receipt. The slow consumer subscribes to everything and
never reads: the router must drop it (16 MiB backlog) without slowing the others, and it must
resume from the last seq it received with no gap. Figures: p50/p99 per client kind, deliveries/s,
router CPU and RSS, when the slow consumer was dropped, resume time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scale import cpu_seconds, machine, pct, rss_mb  # noqa: E402

PYZ = ROOT / "dist" / "codeswarm.pyz"
PROTO = "codeswarm.router.v1"


def cmd(command: str, payload: dict[str, Any], rid: str) -> bytes:
    return json.dumps({"protocol": PROTO, "type": "command", "command": command, "request_id": rid,
                       "payload": payload}).encode() + b"\n"


def writer(outboxes: list[str], job: str, iids: list[str], rate: int, seconds: float, pad: int) -> None:
    """Runs in its own process: appends deltas round-robin at `rate` lines/s."""
    fds = [os.open(p, os.O_WRONLY | os.O_APPEND) for p in outboxes]
    seqs = [json.loads(Path(p).read_bytes().splitlines()[-1])["seq"] for p in outboxes]
    filler = "x" * pad
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        n = i % len(fds)
        seqs[n] += 1
        line = {"seq": seqs[n], "ts": time.time(), "job_id": job, "node_id": n, "injection_id": iids[n],
                "type": "runtime", "runtime": "mock",
                "payload": {"method": "codex/event/agent_message_content_delta",
                            "params": {"msg": {"type": "agent_message_content_delta",
                                               "delta": f"t={time.time():.6f} {filler}"}}}}
        os.write(fds[n], json.dumps(line, separators=(",", ":")).encode() + b"\n")
        i += 1
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    print(i)


def run_cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, str(PYZ), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"codeswarm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=100)
    ap.add_argument("--websockets", type=int, default=10)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--pad", type=int, default=200)
    ap.add_argument("--writer", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer is not None:
        spec = json.loads(args.writer[0])
        writer(spec["outboxes"], spec["job"], spec["iids"], args.rate, args.seconds, args.pad)
        return
    import trio
    import trio_websocket

    tmp = Path(tempfile.mkdtemp(prefix="cs-clients-"))
    home = tmp / "home"
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps({
        "cluster": {"local": {"workspace_root": str(tmp / "runs")}},
        "router": {"inject_timeout_seconds": 120},
        "launch_providers": [{"id": "mock", "backend": "local", "env": {"CODESWARM_HEARTBEAT_SECONDS": "3600"},
                              "defaults": {"worker_mode": "mock", "mock_delay_ms": 0}}],
    }))
    env = {**os.environ, "CODESWARM_HOME": str(home), "CODESWARM_CONFIG": str(cfg)}
    out: dict[str, Any] = {}
    web = None
    try:
        launched = json.loads(run_cli(env, "launch", "--nodes", "4", "--json"))
        sid, job = launched["swarm_id"], launched["job_id"]
        warm = json.loads(run_cli(env, "inject", sid, "--prompt", "warm", "--wait", "--json", "--timeout", "120"))
        iids = [n["injection_id"] for n in sorted(warm["nodes"], key=lambda n: n["node_id"])]
        outboxes = [str(tmp / "runs" / job / "mailbox" / "outbox" / f"{job}_{n:02d}.jsonl") for n in range(4)]
        rpid = int((home / "router.pid").read_text())
        web = subprocess.Popen([sys.executable, str(PYZ), "web", "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        m = re.search(r"http://([\d.]+):(\d+)/\S*token=([^\s&#]+)", web.stdout.readline())  # type: ignore[union-attr]
        assert m, "no URL from codeswarm web"
        host, port, token = m.group(1), int(m.group(2)), m.group(3)
        sock_path = str(home / "router.sock")
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(sock_path)
        slow.sendall(cmd("subscribe", {}, "slow"))
        lat: dict[str, list[float]] = {"socket": [], "websocket": []}
        counts = {"socket": 0, "websocket": 0}

        def record(kind: str, data: bytes, now: float) -> None:
            start = 0
            while (i := data.find(b'"content":"t=', start)) >= 0:
                lat[kind].append((now - float(data[i + 13: data.index(b" ", i + 13)])) * 1000)
                counts[kind] += 1
                start = i + 13

        async def sock_client(i: int, ready: Any) -> None:
            stream = await trio.open_unix_socket(sock_path)
            await stream.send_all(cmd("subscribe", {"swarm_id": sid}, f"s{i}"))
            buf = b""
            while b'"subscribed"' not in buf:
                buf += await stream.receive_some(65536)
            ready()
            while data := await stream.receive_some(1 << 20):
                buf = buf + data
                cut = buf.rfind(b"\n") + 1
                record("socket", buf[:cut], time.time())
                buf = buf[cut:]

        async def ws_client(i: int, nursery: Any, ready: Any) -> None:
            ws = await trio_websocket.connect_websocket(nursery, host, port, f"/ws?token={token}", use_ssl=False,
                                                        extra_headers=[("Origin", f"http://{host}:{port}")])
            await ws.send_message(cmd("subscribe", {"swarm_id": sid}, f"w{i}").decode())
            while '"subscribed"' not in await ws.get_message():
                pass
            ready()
            while True:
                msg = await ws.get_message()
                record("websocket", msg.encode(), time.time())

        async def bench() -> None:
            n_ready = [0]

            def ready() -> None:
                n_ready[0] += 1

            async with trio.open_nursery() as nursery:
                for i in range(args.sockets):
                    nursery.start_soon(sock_client, i, ready)
                for i in range(args.websockets):
                    nursery.start_soon(ws_client, i, nursery, ready)
                with trio.fail_after(60):
                    while n_ready[0] < args.sockets + args.websockets:
                        await trio.sleep(0.05)
                spec = json.dumps({"outboxes": outboxes, "job": job, "iids": iids})
                c0, t0 = cpu_seconds(rpid), time.monotonic()
                proc = await trio.run_process([sys.executable, __file__, "--rate", str(args.rate), "--seconds",
                                               str(args.seconds), "--pad", str(args.pad), "--writer", spec],
                                              capture_stdout=True)
                out["written"] = int(proc.stdout)
                out["router_cpu_pct"] = 100 * (cpu_seconds(rpid) - c0) / (time.monotonic() - t0)
                out["router_rss_mb"], out["router_rss_peak_mb"] = rss_mb(rpid)
                with trio.move_on_after(20):
                    while (counts["socket"] < out["written"] * args.sockets
                           or counts["websocket"] < out["written"] * args.websockets):
                        await trio.sleep(0.1)
                nursery.cancel_scope.cancel()

        trio.run(bench)
        for kind in ("socket", "websocket"):
            n_clients = args.sockets if kind == "socket" else args.websockets
            if n_clients:
                out[f"{kind}_received_pct"] = 100 * counts[kind] / (out["written"] * n_clients)
                out[f"{kind}_p50_ms"] = statistics.median(lat[kind])
                out[f"{kind}_p99_ms"] = pct(lat[kind], 99)
        out["deliveries_per_s"] = (counts["socket"] + counts["websocket"]) / args.seconds
        log = (home / "router.log").read_text()
        dropped = "slow consumer" in log
        out["slow_consumer_dropped"] = float(dropped)
        # the slow consumer reads now: the buffered lines, then EOF; then it resumes from its last seq
        slow.settimeout(10)
        raw = b""
        try:
            while chunk := slow.recv(1 << 20):
                raw += chunk
        except TimeoutError:  # not dropped (the run wrote less than the 16 MiB backlog cap)
            pass
        slow.close()
        got = [json.loads(x) for x in raw.split(b"\n")[:-1]]
        last = max((e["seq"] for e in got if not e.get("directed")), default=0)
        out["slow_bytes_received_before_drop"] = len(raw)
        t0 = time.perf_counter()
        resumed = [json.loads(x) for x in run_cli(env, "events", "--since", str(last), "--json").splitlines()]
        out["resume_replay_s"] = time.perf_counter() - t0
        out["resume_replayed_events"] = len(resumed)
        full = [json.loads(x)["seq"] for x in run_cli(env, "events", "--since", "0", "--json").splitlines()]
        seqs = [e["seq"] for e in got if not e.get("directed")] + [e["seq"] for e in resumed]
        out["resume_gapless"] = float(seqs == [s for s in full if s >= (seqs[0] if seqs else 1)])
        run_cli(env, "terminate", sid, "--force", "--wait")
    finally:
        if web is not None:
            web.kill()
            web.wait()
        subprocess.run([sys.executable, str(PYZ), "router", "stop"], env=env, capture_output=True)
        for outbox in tmp.glob("runs/*/mailbox/outbox/*.jsonl"):  # workers left by a failed run
            try:
                os.killpg(json.loads(outbox.read_bytes().split(b"\n", 1)[0])["data"]["pid"], 9)
            except (ValueError, KeyError, IndexError, ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {machine()}")
    print(f"method: {args.sockets} socket + {args.websockets} WebSocket subscribers (one trio process), 1 never-reading"
          f" consumer; {args.rate} deltas/s of ~{args.pad + 330} bytes written to 4 outboxes for {args.seconds:g} s")
    for key, value in out.items():
        print(f"{key:34} {value:14.2f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
