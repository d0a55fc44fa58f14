"""The router daemon: lock, recovery, listeners and the long-running tasks, all owned here."""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import socket as stdsocket
from pathlib import Path
from typing import Any

import trio

from codeswarm.config import Config
from codeswarm.core.evidence import JobState
from codeswarm.core.nodeloss import RedeliverAcked
from codeswarm.core.spend import ReassertStops
from codeswarm.core.observe import Observed
from codeswarm.core.ticks import Tick
from codeswarm.errors import ProviderError, RouterUnavailable
from codeswarm.launch_policy import tcp_token_ok
from codeswarm.paths import ensure_state_dir, socket_path
from codeswarm.protocol import Rejection, parse_command_line
from codeswarm.router import startup_warnings
from codeswarm.router.app import Router
from codeswarm.router.connection import Connection, LineReader
from codeswarm.router.handlers import Handlers
from codeswarm.router.projects_shell import ProjectsShell
from codeswarm.router.ring import trim_heap
from codeswarm.router.providers.base import ClusterProvider, JobHandle
from codeswarm.router.statelock import release_lock, take_lock
from codeswarm.router.workers import restart_node, watch_nodes

log = logging.getLogger("codeswarm.router")

TICK_SECONDS = 1.0
LOOP_REPORT_EVERY = 60  # a loop failing on every round is reported on its 1st, 61st, ... failure


def make_providers(config: Config) -> dict[str, ClusterProvider]:
    providers: dict[str, ClusterProvider] = {}
    if config.local is not None:
        from codeswarm.router.providers.local import LocalProvider

        providers["local"] = LocalProvider(config)
    if config.slurm_profiles:
        try:
            from codeswarm.router.providers.slurm import SlurmProvider

            providers["slurm"] = SlurmProvider(config)
        except ImportError as exc:  # pragma: no cover - a partial build
            log.error("slurm provider unavailable: %s", exc)
    return providers


class RouterServer:
    def __init__(self, config: Config, state_dir: Path, *, tcp_port: int | None = None) -> None:
        self.config = config
        self.state_dir = ensure_state_dir(state_dir)
        self.tcp_port = tcp_port
        self.router = Router(config, self.state_dir, make_providers(config))
        self.router.projects = ProjectsShell(self.router)
        self.handlers = Handlers(self.router)
        self.ready = trio.Event()
        self.freeze_after_recovery = False  # serve() (the router process) sets it; tests share their process

    # ------------------------------------------------------------------ main

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        r = self.router
        await trio.to_thread.run_sync(r.recover)
        if self.freeze_after_recovery:
            # What start-up built (modules, the recovered state) lives as long as the process: out of
            # the collector's full passes, which walked all of it again and again during a burst.
            gc.freeze()
        sock_path = socket_path(self.state_dir)
        listeners = [await self._unix_listener(sock_path)]
        tcp_listeners = []
        if self.tcp_port is not None:  # config.py admits loopback hosts only
            tcp_listeners = await trio.open_tcp_listeners(self.tcp_port, host=self.config.router.tcp_host)
        async with trio.open_nursery() as nursery:
            r.nursery = nursery
            nursery.start_soon(r.committer)
            nursery.start_soon(r.delivery.run)
            nursery.start_soon(r.heap_trimmer)
            nursery.start_soon(r.periodic_sync)
            r.start_terminate = self._start_terminate
            r.start_restart = lambda effect: nursery.start_soon(restart_node, r, effect)
            # Answer first (issue 13): recovery is complete, so queries are answered from its state at
            # once; other commands wait in Handlers.handle until the rest of start-up below is done.
            for listener in listeners:
                nursery.start_soon(trio.serve_listeners, self._serve_conn, [listener])
            for listener in tcp_listeners:
                nursery.start_soon(trio.serve_listeners, functools.partial(self._serve_conn, tcp=True), [listener])
            r.ingest.sync()  # the watches (a terminate drains the outboxes through them); reading comes last
            for sid in list(r.state.swarms):
                sw = r.state.swarms[sid]
                if sw.state != "terminated" and sw.provider in r.providers:
                    await r.providers[sw.provider].adopt(JobHandle.from_json(sw.job))
                if sw.state == "terminating":  # interrupted by a crash: finish it
                    nursery.start_soon(self.handlers.terminate, sw, None, True, False, "requested")
            await self._report_startup_warnings()
            nursery.start_soon(self._ticker)
            nursery.start_soon(r.dispatcher)
            await nursery.start(r.projects.dispatcher)
            for backend, provider in r.providers.items():
                nursery.start_soon(self._poller, backend, provider)
                nursery.start_soon(watch_nodes, r, backend, provider, self._loop_failed)
            # Issue 12 #2: a prompt acked before a crash but never written to its inbox goes out now
            # (a worker skips one it already accepted).
            await r.carry_out(r.decide(RedeliverAcked()).effects)
            # A spent budget's interrupts may have been cut off by the crash (docs/SPEND.md).
            await r.carry_out(r.decide(ReassertStops()).effects)
            # The outboxes are read from here on: a backlog of worker output (bench_core: 256k lines)
            # is ingested while the router already answers, never before it does.
            nursery.start_soon(r.ingest.notify_loop)
            nursery.start_soon(r.ingest.run)
            self.handlers.started.set()
            self.ready.set()
            task_status.started()
            log.info("router ready on %s", sock_path)
            # the log tail was parsed into short-lived objects: give their pages back, off the start path
            await trio.to_thread.run_sync(trim_heap)

    async def _report_startup_warnings(self) -> None:
        """What recovery found wrong, as router_warning events and in the file `router status` reads."""
        r = self.router
        warnings = list(r.recovery_warnings)
        if self.handlers.keys.warning is not None:
            warnings.append(self.handlers.keys.warning)
        for w in warnings:
            r.emit("router_warning", w)
        try:
            await trio.to_thread.run_sync(startup_warnings.write, self.state_dir, warnings, r.now())
        except OSError as exc:
            log.error("cannot write %s: %s", startup_warnings.FILE_NAME, exc)
            r.emit("router_warning", {"message": f"cannot write {startup_warnings.FILE_NAME} for `router status`: "
                                                 f"{exc}", "error_code": "startup_warnings_not_written"})

    async def _unix_listener(self, path: Path) -> trio.SocketListener:
        if _is_socket(path):
            path.unlink()  # the lock proves no router is behind a leftover socket
        elif os.path.lexists(path):  # a directory or file there is not ours to delete
            from codeswarm.client import socket_problem

            raise RouterUnavailable(f"cannot listen: {socket_problem(path)}; remove it (the router creates its socket there)")
        sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        return trio.SocketListener(sock)

    # ------------------------------------------------------------------ connections

    async def _serve_conn(self, stream: trio.abc.Stream, tcp: bool = False) -> None:
        token = self.config.router.tcp_token if tcp else None
        admitted = token is None  # a TCP connection with a token configured proves itself first
        conn = Connection(stream, "client")
        r = self.router
        conn.cursor = conn.live_from = r.committed_seq
        r.connections.add(conn)
        reader = LineReader()
        try:
            async with trio.open_nursery() as nursery:
                async def send_then_stop() -> None:
                    try:
                        await conn.sender()
                    finally:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(send_then_stop)
                while not conn.closed:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    for item in reader.feed(data):
                        if isinstance(item, Rejection):
                            conn.release()
                            conn.send_directed("command_rejected", item.data(), r.now())
                            continue
                        if not admitted:
                            admitted = self._admit(conn, item, token)
                            if not admitted:
                                continue
                        try:
                            cmd = parse_command_line(item)
                        except Rejection as rej:
                            conn.release()
                            if rej.request_id is not None and rej.code != "invalid_json":
                                conn.add_request_id(rej.request_id)
                                r.emit("command_rejected", rej.data())
                            else:
                                conn.send_directed("command_rejected", rej.data(), r.now())
                            continue
                        if cmd.command != "subscribe":
                            conn.release()  # held live events go out now (subscribe decides itself)
                        await self.handlers.handle(conn, cmd)
                conn.close("client closed")
        except Exception as exc:  # includes ExceptionGroups: a client must never take the router down
            if not _only_disconnects(exc):
                log.exception("connection handler failed")
        finally:
            conn.closed = True
            r.connections.discard(conn)
            with trio.CancelScope(shield=True):
                try:
                    await trio.aclose_forcefully(stream)
                except OSError as exc:  # the peer is gone already; nothing left to tell it
                    log.debug("closing a client stream: %s", exc)

    def _admit(self, conn: Connection, line: bytes, token: str | None) -> bool:
        """The first command of a TCP connection must carry router.tcp.token as `auth_token`."""
        import orjson

        try:
            envelope = orjson.loads(line)
        except orjson.JSONDecodeError:
            envelope = None
        if tcp_token_ok(envelope, token):
            return True
        rid = envelope.get("request_id") if isinstance(envelope, dict) else None
        conn.send_directed("command_rejected", Rejection(
            "unauthorized", "this TCP listener needs the router's token (router.tcp.token) in the envelope "
            "field auth_token", request_id=rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None).data(),
            self.router.now())
        return False

    # ------------------------------------------------------------------ background loops

    def _start_terminate(self, swarm_id: str, reason: str, force: bool) -> None:
        """Effect StartTerminate: run the terminate procedure unless one already runs."""
        r = self.router
        sw = r.state.swarms.get(swarm_id)
        if sw is not None and sw.active and swarm_id not in self.handlers.terminating:
            assert r.nursery is not None
            r.nursery.start_soon(self.handlers.terminate, sw, None, force, False, reason)

    def _loop_failed(self, loop: str, failures: int, exc: BaseException) -> None:
        """A background loop's round failed unexpectedly: the loop goes on (the router must not
        die), but the failure is logged and told to every client, not swallowed."""
        log.error("%s failed (%d in a row)", loop, failures, exc_info=exc)
        if failures == 1 or failures % LOOP_REPORT_EVERY == 0:
            self.router.emit("router_warning", {
                "message": f"the router's {loop} failed: {exc!r} ({failures} in a row); it keeps retrying",
                "error_code": "background_loop_failed", "loop": loop, "failures": failures})

    def _loop_recovered(self, loop: str, failures: int) -> None:
        self.router.emit("router_warning", {"message": f"the router's {loop} works again after {failures} failures",
                                            "error_code": "background_loop_recovered", "loop": loop})

    async def _ticker(self) -> None:
        r = self.router
        failures = 0
        while True:
            await trio.sleep(TICK_SECONDS)
            try:
                decision = r.decide(Tick(r.book.last_heard))
                await r.carry_out(decision.effects)
                if any(sw.state == "terminated" for sw in r.state.swarms.values()):
                    r.ingest.sync()
            except Exception as exc:  # noqa: BLE001 - logged with its traceback and told to clients by _loop_failed
                failures += 1
                self._loop_failed("ticker", failures, exc)
                continue
            if failures:
                self._loop_recovered("ticker", failures)
                failures = 0

    async def _poller(self, backend: str, provider: ClusterProvider) -> None:
        """One batched scheduler query per interval for every active swarm of this backend."""
        r = self.router
        failures = 0
        crashes = 0
        while True:
            # read every time: a provider may back off while nothing changes (slurm)
            await trio.sleep(getattr(provider, "poll_interval", None) or r.settings.status_poll_interval_seconds)
            try:
                failures = await self._poll_once(backend, provider, failures)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback and told to clients by _loop_failed
                crashes += 1
                self._loop_failed(f"{backend} poller", crashes, exc)
                continue
            if crashes:
                self._loop_recovered(f"{backend} poller", crashes)
                crashes = 0

    async def _poll_once(self, backend: str, provider: ClusterProvider, failures: int) -> int:
        """One poll round; returns the count of scheduler failures in a row."""
        r = self.router
        swarms = [sw for sw in r.state.swarms.values() if sw.provider == backend and sw.active]
        if not swarms:
            return failures
        jobs = [JobHandle.from_json(sw.job) for sw in swarms]
        try:
            observations = await provider.poll(jobs)
        except ProviderError as exc:
            failures += 1
            for sw in swarms:
                r.book.observation(sw.swarm_id).poll_error = str(exc)
            if failures == 1 or failures % 10 == 0:
                r.emit("provider_warning", {"backend": backend, "message": str(exc), "failures": failures,
                                            "swarm_ids": [sw.swarm_id for sw in swarms]})
            return failures
        if failures:
            r.emit("provider_warning", {"backend": backend, "message": "scheduler reachable again",
                                        "failures": 0, "recovered": True})
        now = r.now()
        for sw in swarms:
            obs = observations.get(sw.job_id)
            if obs is None or sw.swarm_id in self.handlers.terminating or not sw.active:
                continue
            if obs.state != JobState.UNKNOWN:
                seen = r.book.observation(sw.swarm_id)
                seen.checked_at, seen.poll_error = now, None
            if obs.state in (JobState.ENDED, JobState.NOT_FOUND):
                r.ingest.drain_swarm(sw.swarm_id)  # worker output comes before swarm_terminated
            r.decide(Observed(sw.swarm_id, obs))
        r.ingest.sync()
        return 0


def _only_disconnects(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(e) for e in exc.exceptions)
    return isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError, OSError))


async def serve(config: Config, state_dir: Path, tcp_port: int | None = None) -> None:
    """Run the router until SIGTERM/SIGINT."""
    try:
        fds = take_lock(ensure_state_dir(state_dir))
    except OSError as exc:  # read-only or missing mount: a message and exit 1, not a traceback
        raise RouterUnavailable(f"cannot use the state dir {state_dir}: {exc.strerror or exc}") from None
    sock = socket_path(state_dir)
    if os.path.lexists(sock) and not _is_socket(sock):  # before any task: a plain error, not a group
        from codeswarm.client import socket_problem

        release_lock(fds)
        raise RouterUnavailable(f"cannot listen: {socket_problem(sock)}; remove it (the router creates its socket there)")
    server = RouterServer(config, state_dir, tcp_port=tcp_port)
    server.freeze_after_recovery = True
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.run)

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
    finally:
        try:
            await _save_projects_on_stop(server)
        finally:
            server.router.log.close()
            if _is_socket(socket_path(state_dir)):  # a file put there instead is left for the user to see
                socket_path(state_dir).unlink()
            release_lock(fds)


async def _save_projects_on_stop(server: RouterServer) -> None:
    """A clean stop writes the swarm snapshots and a projects snapshot that are due (they may only
    cover what is in the log), so that the next start does not replay the log for them (issue 13)."""
    with trio.CancelScope(shield=True):
        try:
            await server.router.save_snapshots_on_stop()
        except OSError as exc:
            log.error("cannot write the swarm snapshots on stop: %s", exc)
        if server.router.projects is None:
            return
        try:
            await server.router.projects.save_if_due()
        except OSError as exc:
            log.error("cannot write the projects snapshot on stop: %s", exc)


def _is_socket(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False
