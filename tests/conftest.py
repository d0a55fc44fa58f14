"""Shared fixtures: the real codeswarm.pyz, and a router on a private state dir.

Everything a test starts is stopped by PID at teardown: the router (router.pid) and every
worker recorded in the swarm snapshots.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYZ = ROOT / "dist" / "codeswarm.pyz"
OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="session")
def pyz() -> Path:
    """dist/codeswarm.pyz, built once if missing or older than the sources.

    CODESWARM_TEST_PYZ=<path> runs the tests against another build (e.g. an older commit's, to see
    that a new test fails there)."""
    other = os.environ.get("CODESWARM_TEST_PYZ")
    if other:
        return Path(other).absolute()
    newest = max(p.stat().st_mtime for p in (ROOT / "codeswarm").rglob("*") if p.is_file())
    if not PYZ.exists() or PYZ.stat().st_mtime < newest:
        subprocess.run([str(ROOT / "build.sh")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return PYZ


def local_config(tmp: Path, **router: Any) -> dict[str, Any]:
    return {
        "cluster": {"local": {"workspace_root": str(tmp / "runs")}},
        "router": {"inject_timeout_seconds": 30, "terminated_ttl_seconds": 900, "poll_interval_seconds": 0.2,
                   **router},
        "launch_providers": [
            {"id": "local-mock", "label": "Local (mock agent)", "backend": "local",
             "defaults": {"worker_mode": "mock", "approval_policy": "never", "mock_delay_ms": 5}},
            {"id": "local-mock-approvals", "label": "Local (mock, approvals)", "backend": "local",
             "defaults": {"worker_mode": "mock", "approval_policy": "on-request", "mock_delay_ms": 5}},
        ],
    }


FAKE_APP_SERVER = Path(__file__).resolve().parent / "codex" / "fake_app_server.py"
FAKE_PRICES = {"fake": {"input_tokens_usd_per_m": 2.5, "output_tokens_usd_per_m": 15.0}}


def use_scripted_codex(cs: "Codeswarm") -> None:
    """Configure `cs` so its codex is the scripted app-server (tests/codex/fake_app_server.py), its
    model `fake` priced by FAKE_PRICES."""
    wrapper = cs.tmp / "codex"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_APP_SERVER}" "$@"\n')
    wrapper.chmod(0o755)
    cs.write_config({
        "cluster": {"local": {"workspace_root": str(cs.tmp / "runs")}},
        "router": {"inject_timeout_seconds": 60, "poll_interval_seconds": 0.1},
        "launch_providers": [{"id": "local-fake-codex", "label": "Local (scripted codex)", "backend": "local",
                              "defaults": {"worker_mode": "codex", "approval_policy": "never",
                                           "codex_path": str(wrapper)}}],
        "model_pricing": FAKE_PRICES,
    })


class Codeswarm:
    """Runs the real .pyz against a private state dir and config; cleans up by PID."""

    def __init__(self, pyz: Path, tmp: Path, config: dict[str, Any]) -> None:
        self.pyz = pyz
        self.tmp = tmp
        self.home = tmp / "home"
        self.config_path = tmp / "config.json"
        self.write_config(config)
        self.env = {**os.environ, "CODESWARM_HOME": str(self.home), "CODESWARM_CONFIG": str(self.config_path)}
        self.env.pop("CODESWARM_LOG_LEVEL", None)

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(json.dumps(config))

    def run(self, *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, str(self.pyz), *args], env=env or self.env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"codeswarm {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, timeout: float = 120) -> Any:
        return json.loads(self.run(*args, "--json", timeout=timeout).stdout)

    def events(self, *args: str) -> list[dict[str, Any]]:
        out = self.run("events", "--since", "0", "--json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for(self, predicate: Any, *args: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Follow the event stream (`events --follow --json`) until predicate(events) holds; returns the
        events read so far: a prefix of the log that may stop at any event after the one that made the
        predicate true. Use `wait_settled` when the test then needs the whole log or an exact count."""
        proc = subprocess.Popen([sys.executable, str(self.pyz), "events", "--since", "0", "--follow", "--json", *args],
                                env=self.env, cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        evs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while not predicate(evs):
                remaining = deadline - time.monotonic()
                if proc.poll() is not None and not sel.select(0):
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise AssertionError(f"`events --follow` exited ({proc.returncode}): {err.strip()[-500:]}; "
                                         f"last events: {[e['event'] for e in evs[-30:]]}")
                if remaining <= 0:
                    raise AssertionError(f"condition not met in {timeout}s; last events: "
                                         f"{[e['event'] for e in evs[-30:]]}")
                if not sel.select(remaining):
                    continue
                chunk = os.read(proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    proc.wait(5)
                    continue
                buf += chunk
                *lines, buf = buf.split(b"\n")
                evs.extend(json.loads(line) for line in lines if line.strip())
            return evs
        finally:
            proc.kill()
            proc.wait()

    def wait_settled(self, predicate: Any, *args: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The whole log (`events --since 0 --json *args`) once `predicate` holds for all of it.

        `wait_for` checks its predicate on every prefix of the stream and returns that prefix: right
        for "has X happened yet", wrong for "is it over" or "exactly N". "Every acked prompt has ended"
        already holds on a prefix that stops between one round's last turn_complete and the next
        round's acks (a CI run failed that way). So the stream only says when to look; the answer is
        a whole replay up to the router's head, asked again until the predicate holds for it."""
        deadline = time.monotonic() + timeout
        self.wait_for(predicate, *args, timeout=timeout)
        while True:
            evs = self.events(*args)
            if predicate(evs):
                return evs
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met on the whole log in {timeout}s; last events: "
                                     f"{[e['event'] for e in evs[-30:]]}")
            self.wait_for(lambda es: len(es) > len(evs), *args, timeout=max(1.0, deadline - time.monotonic()))

    def wait_running(self, swarm_id: str, nodes: int, timeout: float = 60) -> None:
        """Until every node of the swarm has logged a running worker (`launch` returns once the swarm
        is logged, not once its workers run; on a loaded machine they can take seconds to start)."""
        self.wait_for(lambda es: {e["data"]["node_id"] for e in es if e["event"] == "node_status"
                                  and e["data"].get("worker") == "running"} >= set(range(nodes)),
                      "--swarm", swarm_id, timeout=timeout)

    def router_pid(self) -> int | None:
        try:
            return int((self.home / "router.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_router(self, sig: int = signal.SIGKILL) -> None:
        pid = self.router_pid()
        assert pid is not None
        os.kill(pid, sig)
        _wait_gone(pid)

    def worker_pids(self) -> list[int]:
        pids = []
        for snap in (self.home / "swarms").glob("*.json"):
            try:
                job = json.loads(snap.read_text()).get("job") or {}
            except ValueError:
                continue
            pids += [p["pid"] for p in (job.get("extra") or {}).get("procs", [])]
        for log in self.tmp.glob("runs/*/mailbox/outbox/*.jsonl"):
            for line in log.read_text(errors="replace").splitlines()[:3]:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("event") == "worker_started":
                    pids.append(obj["data"]["pid"])
        return sorted(set(pids))

    def cleanup(self) -> None:
        pid = self.router_pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)
        for wpid in self.worker_pids():
            if _alive(wpid) and _is_our_worker(wpid, self.tmp):
                try:
                    os.killpg(wpid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _is_our_worker(pid: int, tmp: Path) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return str(tmp).encode() in env


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def log_problems(home: Path) -> tuple[list[str], set[str]]:
    """(problems, names seen) of every event in a router's log (home/events/*.jsonl) against its
    declared shape (codeswarm/core/event_types). Lines that are no JSON object are the damage tests'
    own (the router reports them itself) and are skipped."""
    from codeswarm.core.event_types import check_event

    problems: list[str] = []
    names: set[str] = set()
    for seg in sorted((home / "events").glob("*.jsonl")):
        for n, raw in enumerate(seg.read_bytes().splitlines(), 1):
            try:
                env = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(env, dict):
                continue
            names.add(env.get("event"))
            problems += [f"{seg.name}:{n} seq {env.get('seq')}: {p}"
                         for p in check_event(env.get("event"), env.get("data"))]
    return problems, names


@pytest.fixture
def cs(pyz: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A Codeswarm handle with a local mock config; its router autostarts on first use. At the end
    every event its router logged is checked against its declared shape (a test that forges log
    lines on purpose is marked `wrong_events`)."""
    handle = Codeswarm(pyz, tmp_path, local_config(tmp_path))
    yield handle
    handle.cleanup()
    if not request.node.get_closest_marker("wrong_events"):
        problems, _names = log_problems(handle.home)
        assert problems == [], f"the router logged events that do not match their declared shape: {problems[:5]}"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(autouse=True, scope="session")
def strict_normalizers() -> Any:
    """In-process tests run the normalizers strict: a normalizer bug raises and fails the test that hit it
    (in the router it becomes an `agent_error` with error_code normalizer_error). Session scope, because
    hypothesis refuses function-scoped fixtures around @given tests."""
    from codeswarm.router.normalize.claude import ClaudeNormalizer
    from codeswarm.router.normalize.codex import CodexNormalizer

    ClaudeNormalizer.strict = CodexNormalizer.strict = True
    yield
    ClaudeNormalizer.strict = CodexNormalizer.strict = False


# Every event an in-process router records (Router.decide and Router.emit both go through
# Router._record) is checked against its declared shape (codeswarm/core/event_types); the test
# that made a wrong one fails. Collected, not raised: the router catches errors of its own callers.
EVENT_PROBLEMS: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def checked_router_events() -> Any:
    from codeswarm.core.event_types import check_event
    from codeswarm.router.app import Router

    original = Router._record

    def _record(self: Router, events: list[Any]) -> None:
        for ev in events:
            problems = check_event(ev.name, ev.data)
            if problems:
                EVENT_PROBLEMS.append(f"{ev.name}: {problems}")
        original(self, events)

    Router._record = _record  # type: ignore[method-assign]
    yield
    Router._record = original  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    EVENT_PROBLEMS.clear()
    result = yield
    if EVENT_PROBLEMS and not item.get_closest_marker("wrong_events"):
        found = list(EVENT_PROBLEMS)
        EVENT_PROBLEMS.clear()
        raise AssertionError(f"the router recorded {len(found)} event(s) that do not match their declared shape "
                             f"(codeswarm/core/event_types): {found[:5]}")
    return result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "wrong_events: the test records wrongly shaped events on purpose")
