"""Exact subscriptions (PROTOCOL 3.4, issue 13): a client that drops and re-subscribes with `since`
gets every broadcast event exactly once, in seq order, without any dedupe of its own, while a
firehose runs. The real .pyz router and mock workers; raw socket clients (what a script would do).
"""

from __future__ import annotations

import json
import random
import select
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from tests.conftest import Codeswarm, local_config

PROTOCOL = "codeswarm.router.v1"


class Client:
    def __init__(self, sock_path: Path) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(str(sock_path))
        self.buf = b""

    def send(self, command: str, payload: dict[str, Any], rid: str) -> None:
        self.s.sendall(json.dumps({"protocol": PROTOCOL, "type": "command", "command": command,
                                   "request_id": rid, "payload": payload}).encode() + b"\n")

    def events(self, timeout: float) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                yield json.loads(raw)
            left = deadline - time.monotonic()
            assert left > 0, "no event in time"
            if select.select([self.s], [], [], left)[0]:
                data = self.s.recv(1 << 16)
                assert data, "the router closed the connection"
                self.buf += data

    def close(self) -> None:
        self.s.close()  # abrupt: unread data is simply dropped


def head_seq(sock: Path) -> int:
    c = Client(sock)
    c.send("ping", {}, "p")
    head = next(e for e in c.events(30) if e["event"] == "pong")["data"]["head_seq"]
    c.close()
    return int(head)


def reconnect_many(sock: Path, times: int, delay: Any, rng: random.Random) -> tuple[list[int], int]:
    """Drop and re-subscribe `times` times; every broadcast seq received, in arrival order."""
    last = head_seq(sock)
    first = last
    seqs: list[int] = []
    for i in range(times):
        c = Client(sock)
        time.sleep(delay(i))  # a client that looks up where it stopped before it subscribes
        c.send("subscribe", {"since": last}, f"s{i}")
        want = rng.randint(20, 400)
        got = 0
        for ev in c.events(30):
            if ev.get("directed"):
                continue
            seqs.append(ev["seq"])
            last = ev["seq"]
            got += 1
            if got >= want:
                break
        c.close()
    return seqs, first


def start_firehose(cs: Codeswarm) -> str:
    cs.write_config(local_config(cs.tmp))
    sid = cs.run("launch", "--nodes", "4").stdout.strip()
    cs.run("inject", sid, "--prompt", "[mock:firehose=30000][mock:rate=1500] stream")  # ~6,000 events/s
    return sid


def test_fifty_reconnects_during_a_firehose_get_every_event_once_in_order(cs: Codeswarm) -> None:
    sid = start_firehose(cs)
    sock = cs.home / "router.sock"
    rng = random.Random(13)
    seqs, first = reconnect_many(sock, 50, lambda _i: rng.choice((0.0, 0.0, 0.005, 0.02)), rng)
    assert len(seqs) > 50 * 20
    assert seqs == list(range(first + 1, first + 1 + len(seqs))), "a gap, a repeat or a reordering"
    cs.run("terminate", sid, "--force", "--wait")


def test_a_late_subscribe_after_live_events_were_sent_still_gets_each_once(cs: Codeswarm) -> None:
    """Subscribing 0.6 s after connecting (past the router's hold of a fresh connection's live
    events): live events already went out on the connection. The replay skips exactly those: none
    comes twice and none is missing; the events from before the connection come after them."""
    sid = start_firehose(cs)
    sock = cs.home / "router.sock"
    since = head_seq(sock)
    time.sleep(0.2)  # events happen before the connection exists: they must come in the replay
    c = Client(sock)
    time.sleep(0.6)
    c.send("subscribe", {"since": since}, "late")
    seqs: list[int] = []
    after = 0
    for ev in c.events(30):
        if ev.get("directed"):
            after = after or (ev["event"] == "subscribed")
            continue
        seqs.append(ev["seq"])
        after += 1 if after else 0
        if after > 300:
            break
    c.close()
    assert len(seqs) == len(set(seqs)), "an event came twice"
    assert sorted(seqs) == list(range(since + 1, since + 1 + len(seqs))), "an event is missing"
    cs.run("terminate", sid, "--force", "--wait")
