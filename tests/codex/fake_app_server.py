"""A scripted stand-in for `codex app-server` (stdio JSON-RPC), for runtime tests without the binary.

It speaks like the real 0.169.0 server (no "jsonrpc" field, server request ids from 0, `emittedAtMs`)
and picks its behaviour from the prompt text:

  UNKNOWN_REQUEST  sends an `item/tool/requestUserInput` server request and reports the answer
  APPROVE          sends a command approval request and reports the decision it got
  DIE              exits (code 3) in the middle of the turn
  REJECT_TURN      answers turn/start with a JSON-RPC error
  USAGE            reports 1,000,000 fresh input tokens (thread/tokenUsage/updated) during the turn
  LATE_USAGE       USAGE, and 2,000,000 more reported right after turn/completed (as codex can)
  SLOW_LATE_USAGE  the same, 1 s after turn/completed (after the worker stopped reading for the turn)
  anything else    one agent message, then turn/completed

With FAKE_APP_SERVER_MODE=hang_init it never answers `initialize`.
Every line it receives is appended to $FAKE_APP_SERVER_LOG (JSON lines) for the test to inspect.
"""

from __future__ import annotations

import json
import os
import sys
import time

LOG = os.environ.get("FAKE_APP_SERVER_LOG")
_server_ids = iter(range(1_000_000))
_totals: dict[str, int] = {}  # thread -> cumulative input tokens reported


def send(obj: dict) -> None:
    if "method" in obj and "id" not in obj:
        obj["emittedAtMs"] = int(time.time() * 1000)
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def receive() -> dict | None:
    line = sys.stdin.readline()
    if not line:
        return None
    msg = json.loads(line)
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps(msg) + "\n")
    return msg


def wait_answer(rid: int) -> dict:
    while True:
        msg = receive()
        if msg is None:
            sys.exit(0)
        if msg.get("id") == rid and "method" not in msg:
            return msg


def agent_message(thread: str, turn: str, text: str) -> None:
    item = {"type": "agentMessage", "id": f"msg-{turn}", "text": text, "phase": None}
    send({"method": "item/started", "params": {"threadId": thread, "turnId": turn, "item": {**item, "text": ""}}})
    send({"method": "item/agentMessage/delta", "params": {"threadId": thread, "turnId": turn,
                                                          "itemId": item["id"], "delta": text}})
    send({"method": "item/completed", "params": {"threadId": thread, "turnId": turn, "item": item}})


def token_usage(thread: str, turn: str, added: int) -> None:
    _totals[thread] = _totals.get(thread, 0) + added

    def counts(n: int) -> dict:
        return {"totalTokens": n, "inputTokens": n, "cachedInputTokens": 0, "outputTokens": 0,
                "reasoningOutputTokens": 0}
    send({"method": "thread/tokenUsage/updated", "params": {"threadId": thread, "turnId": turn, "tokenUsage": {
        "total": counts(_totals[thread]), "last": counts(added), "modelContextWindow": 258400}}})


def run_turn(thread: str, turn: str, text: str) -> None:
    send({"method": "turn/started", "params": {"threadId": thread, "turn": {"id": turn, "status": "inProgress"}}})
    if "DIE" in text:
        sys.exit(3)
    if "UNKNOWN_REQUEST" in text:
        rid = next(_server_ids)
        send({"id": rid, "method": "item/tool/requestUserInput",
              "params": {"threadId": thread, "turnId": turn, "itemId": "q1", "questions": []}})
        answer = wait_answer(rid)
        agent_message(thread, turn, "error answer" if "error" in answer else "result answer")
    elif "APPROVE" in text:
        rid = next(_server_ids)
        send({"method": "item/started", "params": {"threadId": thread, "turnId": turn, "item": {
            "type": "commandExecution", "id": "call_a", "command": "touch x", "cwd": "/", "status": "inProgress"}}})
        send({"id": rid, "method": "item/commandExecution/requestApproval", "params": {
            "threadId": thread, "turnId": turn, "itemId": "call_a", "command": "touch x", "cwd": "/",
            "availableDecisions": ["accept", "cancel"]}})
        answer = wait_answer(rid)
        agent_message(thread, turn, "decision=" + json.dumps(answer.get("result", {}).get("decision")))
    else:
        agent_message(thread, turn, f"echo: {text}")
    if "USAGE" in text:
        token_usage(thread, turn, 1_000_000)
    send({"method": "turn/completed", "params": {"threadId": thread, "turn": {
        "id": turn, "status": "completed", "error": None, "items": []}}})
    if "LATE_USAGE" in text:
        if "SLOW_LATE_USAGE" in text:
            time.sleep(1.0)
        token_usage(thread, turn, 2_000_000)


def main() -> None:
    initialized = False
    turns = 0
    pid = os.getpid()
    while True:
        msg = receive()
        if msg is None:
            return
        method, rid, params = msg.get("method"), msg.get("id"), msg.get("params") or {}
        if rid is None:
            continue  # notifications (initialized) and stray answers
        if method == "initialize":
            if os.environ.get("FAKE_APP_SERVER_MODE") == "hang_init":
                time.sleep(3600)
            if initialized:
                send({"id": rid, "error": {"code": -32600, "message": "Already initialized"}})
                continue
            initialized = True
            send({"id": rid, "result": {"userAgent": "fake/0.169.0", "platformOs": "linux"}})
        elif method in ("thread/start", "thread/resume"):
            thread = params.get("threadId") or f"thread-{pid}"
            send({"id": rid, "result": {"thread": {"id": thread, "status": {"type": "idle"}}, "model": "fake"}})
        elif method == "turn/start":
            text = "".join(i.get("text", "") for i in params.get("input") or [])
            if "REJECT_TURN" in text:
                send({"id": rid, "error": {"code": -32600, "message": "turn rejected by fake"}})
                continue
            turns += 1
            turn = f"turn-{pid}-{turns}"
            send({"id": rid, "result": {"turn": {"id": turn, "status": "inProgress", "items": []}}})
            run_turn(params.get("threadId"), turn, text)
        else:
            send({"id": rid, "error": {"code": -32600, "message": f"Invalid request: unknown variant {method}"}})


if __name__ == "__main__":
    main()
