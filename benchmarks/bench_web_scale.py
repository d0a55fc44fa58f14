"""The web page with a 1,000-node swarm: time to the overview, and the page under 2,000 events/s.

    python3 benchmarks/bench_web_scale.py [--nodes 1000] [--rate 2000] [--seconds 10]

Method. The swarm is the scale benchmark's (bench_scale.Bench): the real router from
dist/codeswarm.pyz launches a 1,000-node local swarm whose worker processes are `sleep`
placeholders, and this script plays the workers by writing their outboxes in the worker's format
(worker_started, turn_accepted, codex-dialect runtime lines). Then `codeswarm web` (same pyz) serves
the page to headless Chromium. Three nodes ask for approval before the page opens.

Figures: time from navigation start to the overview listing every node (the page's own mark; the
wall-clock time around Playwright's goto is printed too); DOM cells (virtualization);
then for --seconds, assistant deltas at --rate lines/s round-robin over all nodes while the page is
sampled every 100 ms and a key is typed into the search box every 250 ms: events the page applied
vs lines written, p95 lag (now minus the router timestamp of the newest applied event), draws/s
(the page draws once per batch of events that arrived, so this follows the router's bursts),
page_fps (animation frames the browser managed: a busy main thread shows here), input latency
(keydown -> the next frame after the handler ran, as the page measures it), and the same lag seen by
a plain socket subscriber of the router next to the page (the part of the lag that is the router's).
Targets: overview < 2 s; applied >= 90 % of written; input latency p95 < 100 ms.

Also imported by tests/web/test_scale.py (the same harness, with assertions).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scale import PYZ, Bench, machine, pct  # noqa: E402

APPROVAL_NODES = (7, 500, 993)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Installed in the page before the firehose: keydown -> the first frame after its handlers ran.
LATENCY_PROBE = """() => {
  window.__lat = [];
  window.__raf = 0;
  const tick = () => { window.__raf += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  document.addEventListener('keydown', (e) => {
    const t0 = e.timeStamp;
    requestAnimationFrame(() => setTimeout(() => window.__lat.push(performance.now() - t0), 0));
  }, true);
}"""


class SimSwarm:
    """A 1,000-node swarm of placeholders (bench_scale.Bench) plus `codeswarm web` on it."""

    def __init__(self, nodes: int) -> None:
        self.bench = Bench(argparse.Namespace(nodes=nodes, profile=None, rate=0, seconds=0, idle_seconds=0, backlog=0))
        self.nodes = nodes
        self.web: subprocess.Popen[str] | None = None
        self.url = ""
        self.calls: dict[int, str] = {}

    def start(self) -> None:
        b = self.bench
        b.launch()
        self.iids = self.inject()
        for node in APPROVAL_NODES:
            if node < self.nodes:
                self.ask_approval(node)
        self.web = subprocess.Popen([sys.executable, str(PYZ), "web", "--port", "0"], env=b.env, cwd=b.tmp,
                                    stdout=subprocess.PIPE, stderr=open(b.tmp / "web.log", "wb"), text=True,
                                    start_new_session=True)
        assert self.web.stdout is not None
        self.url = self.web.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"codeswarm web printed {self.url!r}; see {b.tmp / 'web.log'}")

    def inject(self) -> dict[int, str]:
        """Inject into every node through the CLI and play the workers' acceptance (as Bench.inject
        does; the CLI's outcome for an accepted turn is "delivered" or, once a turn started, "started")."""
        from codeswarm.mailbox import inbox_path

        b = self.bench
        cli = subprocess.Popen([sys.executable, str(PYZ), "inject", b.sid, "--prompt", "stream please", "--json",
                                "--timeout", "120"], env=b.env, stdout=subprocess.PIPE, text=True)
        iids: dict[int, str] = {}
        deadline = time.monotonic() + 120
        while len(iids) < self.nodes and time.monotonic() < deadline:
            for node in range(self.nodes):
                if node in iids:
                    continue
                try:
                    raw = inbox_path(b.root, b.job, node).read_bytes()
                except FileNotFoundError:
                    continue
                if not raw.endswith(b"\n"):
                    continue
                iids[node] = json.loads(raw.splitlines()[-1])["injection_id"]
                b.lifecycle(node, "turn_accepted", {"queued": False}, iids[node])
                b.runtime(node, iids[node], {"method": "turn/started", "params": {
                    "threadId": f"t{node}", "turn": {"id": "turn-1", "status": "inProgress"}}})
            time.sleep(0.01)
        out, _ = cli.communicate(timeout=120)
        result = json.loads(out)
        if {n["node_id"]: n["injection_id"] for n in result["nodes"]} != iids or \
                any(n["outcome"] not in ("delivered", "started") for n in result["nodes"]):
            raise RuntimeError(f"inject did not reach every node: {out[:2000]}")
        return iids

    def ask_approval(self, node: int) -> None:
        call_id = f"call_sim_{node}"
        self.calls[node] = call_id
        self.bench.runtime(node, self.iids[node], {
            "id": 1000 + node, "method": "item/commandExecution/requestApproval",
            "params": {"threadId": f"t{node}", "turnId": "turn-1", "itemId": call_id, "command": f"rm -rf build-{node}",
                       "cwd": "/tmp", "reason": "simulated", "availableDecisions": ["accept", "decline", "cancel"]}})

    def inbox_lines(self, node: int) -> list[dict[str, Any]]:
        from codeswarm.mailbox import inbox_path

        raw = inbox_path(self.bench.root, self.bench.job, node).read_bytes()
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def say(self, node: int, text: str) -> None:
        self.bench.delta(node, self.iids[node], text)

    def firehose(self, rate: int, seconds: float) -> int:
        """Assistant deltas at `rate` lines/s, round-robin over every node; returns lines written."""
        n, interval = self.nodes, 1.0 / rate
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            self.say(i % n, f"chunk {i} ")
            i += 1
            delay = t0 + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return i

    def stop(self) -> None:
        if self.web is not None and self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            try:
                self.web.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.web.pid, signal.SIGKILL)
                self.web.wait()
        self.bench.cleanup()


def open_overview(page: Any, url: str, nodes: int) -> tuple[float, float]:
    """Navigate and wait until the overview lists every node. Returns (seconds from the page's
    navigation start to the overview listing every node, as the page marks it; wall-clock seconds
    from calling goto until this script saw it, which adds the browser's and CDP's overhead)."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(
        "n => { const s = document.querySelector('.ov-summary'); return s && s.textContent.includes(`of ${n} nodes`)"
        " && document.querySelectorAll('.ov-win .cell').length > 0; }", arg=nodes, timeout=60_000)
    wall = time.perf_counter() - t0
    mark = page.evaluate("performance.getEntriesByName('codeswarm-overview-complete')[0].startTime")
    return mark / 1000, wall


class RawSubscriber:
    """A plain socket subscriber next to the page: the lag the router itself imposes (emission
    timestamp -> receipt), to tell the page's share of the lag from the router's."""

    def __init__(self, sock_path: Path) -> None:
        import socket

        self.lags: list[float] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(sock_path))
        self.sock.sendall(json.dumps({"protocol": "codeswarm.router.v1", "type": "command", "command": "subscribe",
                                      "request_id": "raw", "payload": {}}).encode() + b"\n")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        import datetime

        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            now = time.time()
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if b'"assistant_delta"' in line:
                    ts = json.loads(line)["timestamp"]
                    self.lags.append((now - datetime.datetime.fromisoformat(ts).timestamp()) * 1000)

    def close(self) -> None:
        self.sock.close()


def under_load(page: Any, sim: SimSwarm, rate: int, seconds: float) -> dict[str, float]:
    """The firehose with page sampling and typed input; figures as in the module docstring."""
    raw = RawSubscriber(sim.bench.home / "router.sock")
    page.evaluate(LATENCY_PROBE)
    page.focus(".ov-search")
    applied0 = page.evaluate("window.codeswarm.store.stats.applied")
    frames0 = page.evaluate("window.codeswarm.perf.frames")
    raf0 = page.evaluate("window.__raf")
    box: dict[str, int] = {}
    writer = threading.Thread(target=lambda: box.update(sent=sim.firehose(rate, seconds)))
    t0 = time.perf_counter()
    writer.start()
    lags: list[float] = []
    next_key = t0
    typed = 0
    while writer.is_alive():
        lags.append(page.evaluate("window.codeswarm.perf.lastLagMs"))
        if time.perf_counter() >= next_key:
            page.keyboard.press("x" if typed % 2 == 0 else "Backspace")
            typed += 1
            next_key += 0.25
        page.wait_for_timeout(100)
    writer.join()
    elapsed = time.perf_counter() - t0
    frames = page.evaluate("window.codeswarm.perf.frames") - frames0
    raf = page.evaluate("window.__raf") - raf0
    sent = box["sent"]
    # Lines written at the end are still on their way: give the chain a moment, then count.
    deadline = time.perf_counter() + 10
    applied = 0
    while time.perf_counter() < deadline:
        applied = page.evaluate("window.codeswarm.store.stats.applied") - applied0
        if applied >= sent:
            break
        page.wait_for_timeout(200)
    lat = page.evaluate("window.__lat")
    page.fill(".ov-search", "")
    raw.close()
    return {
        "router_subscriber_lag_p50_ms": statistics.median(raw.lags) if raw.lags else float("nan"),
        "router_subscriber_lag_p95_ms": pct(raw.lags, 95) if raw.lags else float("nan"),
        "written_per_s": sent / elapsed, "written": sent, "applied": applied, "applied_ratio": applied / sent,
        "lag_p50_ms": statistics.median(lags), "lag_p95_ms": pct(lags, 95), "draws_per_s": frames / elapsed,
        "page_fps": raf / elapsed,
        "input_samples": len(lat), "input_latency_p50_ms": statistics.median(lat) if lat else float("nan"),
        "input_latency_p95_ms": pct(lat, 95) if lat else float("nan"), "input_latency_max_ms": max(lat, default=0),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if not PYZ.exists():
        subprocess.run([str(ROOT / "build.sh")], check=True)
    from playwright.sync_api import sync_playwright

    sim = SimSwarm(args.nodes)
    out: dict[str, float] = {}
    try:
        sim.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            out["overview_s"], out["overview_wall_s"] = open_overview(page, sim.url, args.nodes)
            out["dom_cells"] = page.locator(".ov-win .cell").count()
            out.update(under_load(page, sim, args.rate, args.seconds))
            browser.close()
    finally:
        sim.stop()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"method: {args.nodes}-node swarm (placeholder workers, simulated outboxes) -> real router -> "
          f"`codeswarm web` -> headless Chromium, 1280x800; {args.rate} deltas/s for {args.seconds:g} s")
    targets = {"overview_s": ("<", 2.0), "applied_ratio": (">=", 0.9), "input_latency_p95_ms": ("<", 100)}
    for key, value in out.items():
        line = f"{key:24} {value:12.2f}"
        if key in targets:
            op, goal = targets[key]
            ok = value < goal if op == "<" else value >= goal
            line += f"   target {op} {goal}  ratio {value / goal:.2f}  {'OK' if ok else 'MISSED'}"
        print(line)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
