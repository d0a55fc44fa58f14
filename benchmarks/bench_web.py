"""How many events per second the web page renders from a mock firehose before it falls behind.

Runs the real stack: dist/codeswarm.pyz `web` (which autostarts a router on a temp state dir),
local mock workers, and the page in headless Debian Chromium (Playwright). One swarm of N nodes is
launched; each step injects `[mock:firehose=M][mock:rate=R]` into every node, offering N*R
assistant deltas per second, and samples the page every 100 ms: events applied, frames drawn and
lag (now minus the router's emission timestamp of the newest drawn event).

A step keeps up when the page drew >= 90 % of what the router emitted (rate measured from the
events' own timestamps) and its p95 lag stayed under 500 ms. A final step without a rate limit
shows the end-to-end ceiling (mock workers + router + bridge + page).

    .venv/bin/python benchmarks/bench_web.py [--nodes 4] [--seconds 4] [--rates 1000,2000,4000,8000,16000]

With --synthetic the page alone is measured: events are generated inside the page and applied as
if they had arrived (no router, no workers, no WebSocket), at each rate, and a rate is kept up with
when the generator stayed on schedule and the page still drew >= 30 frames/s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYZ = ROOT / "dist" / "codeswarm.pyz"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SAMPLER = """() => {
  const cs = window.codeswarm;
  window.__samples = [];
  clearInterval(window.__sampler);
  window.__sampler = setInterval(() => window.__samples.push(
    [performance.now(), cs.store.stats.applied, cs.perf.lastLagMs, cs.perf.frames,
     Date.parse(cs.store.stats.newestTs || 0)]), 100);
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each step")
    ap.add_argument("--rates", default="1000,2000,4000,8000,16000", help="offered events/s, total over all nodes")
    ap.add_argument("--unlimited", type=int, default=20000, help="deltas per node in the unlimited step (0: skip)")
    ap.add_argument("--hidden", action="store_true", help="look at the launch form, not the swarm (no pane drawing)")
    ap.add_argument("--synthetic", action="store_true", help="measure the page alone (events made in the page)")
    args = ap.parse_args()
    # A SIGTERM (e.g. from `timeout`) must still run the clean-up below: router and workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.synthetic:
        synthetic(args)
        return
    if not PYZ.exists():
        sys.exit("build dist/codeswarm.pyz first (./build.sh)")
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="cswbench-"))
    home = tmp / "home"
    config = tmp / "config.json"
    config.write_text(json.dumps({
        "cluster": {"local": {"workspace_root": str(tmp / "runs")}},
        "router": {"poll_interval_seconds": 0.05, "local_graceful_terminate_timeout_seconds": 2},
        "launch_providers": [{"id": "bench-mock", "backend": "local",
                              "defaults": {"worker_mode": "mock", "approval_policy": "never", "mock_delay_ms": 0}}],
    }))
    env = {**os.environ, "CODESWARM_HOME": str(home), "CODESWARM_CONFIG": str(config)}
    web = subprocess.Popen([sys.executable, str(PYZ), "web", "--port", "0"], env=env, cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    results = []
    try:
        url = _readline(web)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector("#conn[data-state=connected]")
            swarm = _launch(page, args.nodes)
            if args.hidden:
                page.evaluate("location.hash = '#/launch'")
            steps = [int(r) for r in args.rates.split(",") if r] + ([0] if args.unlimited else [])
            for turn, total_rate in enumerate(steps, start=2):
                if total_rate:
                    per_node = max(1, total_rate // args.nodes)
                    count = int(per_node * args.seconds)
                    prompt = f"bench [mock:firehose={count}] [mock:rate={per_node}]"
                else:
                    count = args.unlimited
                    prompt = f"bench [mock:firehose={count}]"
                res = _step(page, swarm, args.nodes, turn, prompt)
                res["offered"] = total_rate or None
                # Behind = the page drew less than the router emitted, or drew it late.
                res["kept_up"] = res["rate"] >= 0.9 * res["source_rate"] and res["p95_lag_ms"] < 500
                results.append(res)
                print(f"offered {total_rate or 'unlimited':>9} ev/s  router {res['source_rate']:8.0f} ev/s  "
                      f"page {res['rate']:8.0f} ev/s  "
                      f"p95 lag {res['p95_lag_ms']:6.0f} ms  max lag {res['max_lag_ms']:6.0f} ms  "
                      f"{res['fps']:4.0f} fps  {'ok' if res['kept_up'] else 'behind'}",
                      flush=True)
            page.evaluate("window.codeswarm.conn.send('swarm_terminate', {swarm_id: %s, terminate_params: {force: true}})"
                          % json.dumps(swarm))
            time.sleep(1)
            browser.close()
    finally:
        web.terminate()
        web.wait()
        _stop_router(home, tmp)
    best = max((r["rate"] for r in results if r["kept_up"]), default=0)
    print(json.dumps({"nodes": args.nodes, "page_kept_up_at_events_per_s": round(best), "steps": results}))


SYNTHETIC = """async ([rate, seconds, nodes]) => {
  const cs = window.codeswarm;
  const sid = 'synthetic-swarm';
  let seq = 1;
  const ev = (event, data) => ({type: 'event', event, seq: seq++, timestamp: new Date().toISOString(),
    data: {swarm_id: sid, job_id: 'synthetic', ...data}});
  cs.store.apply(ev('swarm_launched', {node_count: nodes, state: 'running', provider: 'local', provider_id: 'synthetic'}));
  location.hash = '#/swarm/' + sid;
  await new Promise((r) => setTimeout(r, 300));
  for (let n = 0; n < nodes; n++) cs.store.apply(ev('turn_started', {node_id: n, injection_id: 'i' + n}));
  const total = Math.round(rate * seconds);
  const t0 = performance.now();
  const f0 = cs.perf.frames;
  let sent = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
      for (; sent < due; sent++) {
        cs.store.apply(ev('assistant_delta', {node_id: sent % nodes, injection_id: 'i' + (sent % nodes), content: ' ' + sent}));
      }
      cs.schedule();
      if (sent >= total) resolve(); else setTimeout(tick, 2);
    };
    tick();
  });
  const dt = (performance.now() - t0) / 1000;
  return {events: sent, seconds: dt, fps: (cs.perf.frames - f0) / dt};
}"""


def synthetic(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    # The page is served by `web` bridged to nowhere: it shows "router unavailable" and draws what
    # the script below feeds its store.
    web = subprocess.Popen([sys.executable, "-m", "codeswarm", "web", "--port", "0", "--router-socket",
                            "/nonexistent/router.sock"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    results = []
    try:
        url = _readline(web)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for rate in [int(r) for r in args.rates.split(",") if r]:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url)
                page.wait_for_function("window.codeswarm")
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                m0 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                r = page.evaluate(SYNTHETIC, [rate, args.seconds, args.nodes])
                m1 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                busy = (m1["TaskDuration"] - m0["TaskDuration"]) / r["seconds"]
                r.update(rate=rate, achieved=r["events"] / r["seconds"], busy=busy,
                         kept_up=r["seconds"] <= args.seconds * 1.05 and r["fps"] >= 30)
                results.append(r)
                print(f"synthetic {rate:>7} ev/s  drew {r['achieved']:8.0f} ev/s  {r['fps']:4.0f} fps  "
                      f"main thread {100 * min(busy, 1):3.0f}% busy  {'ok' if r['kept_up'] else 'behind'}", flush=True)
                page.close()
            browser.close()
    finally:
        web.terminate()
        web.wait()
    best = max((r["rate"] for r in results if r["kept_up"]), default=0)
    print(json.dumps({"nodes": args.nodes, "synthetic_kept_up_at_events_per_s": best, "steps": results}))


def _launch(page, nodes: int) -> str:
    page.click("#new-swarm")
    page.fill("#launch-nodes", str(nodes))
    page.click("form.launch button[type=submit]")
    page.wait_for_url("**/#/swarm/*")
    swarm = page.url.rsplit("/", 1)[1]
    page.wait_for_function("([s, n]) => window.codeswarm.store.swarms.get(s)?.nodes.filter(x => x.worker === 'running').length === n",
                           arg=[swarm, nodes], timeout=60_000)
    return swarm


def _step(page, swarm: str, nodes: int, turn: int, prompt: str) -> dict:
    page.evaluate(SAMPLER)
    page.evaluate("([s, p]) => window.codeswarm.conn.send('inject', {swarm_id: s, nodes: 'all', content: p})",
                  [swarm, prompt])
    # Done when every node has drawn its turn-end marker for this turn.
    page.wait_for_function(
        "([s, t]) => window.codeswarm.store.swarms.get(s).nodes.every("
        "n => n.blocks.filter(b => b.kind === 'turn' && b.phase === 'end').length >= t - 1)",
        arg=[swarm, turn], timeout=300_000, polling=200)
    time.sleep(0.3)
    samples = page.evaluate("window.__samples")
    page.evaluate("clearInterval(window.__sampler)")
    active = [s for a, s in zip(samples, samples[1:]) if s[1] > a[1]]
    if len(active) < 2:
        return {"rate": 0.0, "source_rate": 0.0, "p95_lag_ms": 0.0, "max_lag_ms": 0.0, "fps": 0.0, "events": 0}
    t0, t1 = active[0][0] - 100, active[-1][0]
    events = active[-1][1] - active[0][1]
    lags = sorted(s[2] for s in active)
    emitted_span = max(0.001, (active[-1][4] - active[0][4]) / 1000)
    return {
        "rate": events / ((t1 - t0) / 1000),
        "source_rate": events / emitted_span,  # what the router emitted (its envelope timestamps)
        "p95_lag_ms": lags[int(0.95 * (len(lags) - 1))],
        "max_lag_ms": lags[-1],
        "fps": (active[-1][3] - active[0][3]) / ((t1 - t0) / 1000),
        "events": events,
    }


def _readline(proc: subprocess.Popen[str]) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(60)
    if not box or not box[0].startswith("http"):
        sys.exit("`codeswarm web` did not print its URL")
    return box[0].strip()


def _stop_router(home: Path, tmp: Path) -> None:
    try:
        pid = int((home / "router.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            os.kill(pid, 0)
            time.sleep(0.05)
    except (OSError, ValueError):
        pass
    # Mock workers of our swarm (their environment names our temp dir); by PID, nothing else.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(tmp).encode() in (proc / "environ").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
