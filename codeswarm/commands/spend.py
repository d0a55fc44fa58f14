"""`codeswarm spend`: dollars and tokens per model and per node, summed over the logged usage events."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json


@click.command(help="Spend per model and per node, from the logged usage events.")
@click.option("--swarm", "swarm_id", default=None, help="Only this swarm.")
@click.option("--project", "project_id", default=None, help="Only the usage of this project's tasks, per task.")
@click.option("--since", "since_text", default=None,
              help="Only usage logged at or after TIME: ISO-8601 (UTC unless it says) or an age like 30m, 2h, 7d.")
@config_option
@json_option
@handle_errors
def command(swarm_id: str | None, project_id: str | None, since_text: str | None, config_path: str | None,
            state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    from codeswarm.spend.report import build_report, parse_since, render_tables

    since = None
    if since_text is not None:
        try:
            since = parse_since(since_text, datetime.now(timezone.utc))
        except ValueError as exc:
            raise click.BadParameter(str(exc).removeprefix("--since: "), param_hint="--since") from None
    with connect(config_path, state_dir, no_autostart, timeout=60) as client:
        if project_id is not None:  # an unknown project is an error (exit 3), not an empty table
            expect(client.request("project_status", {"project_id": project_id}), "project_status")
        envelopes, truncated = _replay_usage(client, swarm_id)
    report = build_report(envelopes, since=since, swarm_ids=None if swarm_id is None else {swarm_id},
                          project_id=project_id)
    if as_json:
        print_json({**report.to_json(), "since": since.isoformat() if since else None, "swarm_id": swarm_id,
                    "project_id": project_id, "log_truncated": truncated})
        return
    click.echo(render_tables(report))
    if truncated:
        click.echo("note: the oldest events were pruned from the log; `status` has the full totals", err=True)


def _replay_usage(client: Any, swarm_id: str | None) -> tuple[list[dict[str, Any]], bool]:
    """Every retained usage event (of one swarm), then `subscribed` ends the replay."""
    payload: dict[str, Any] = {"since": 0, "events": ["usage"]}
    if swarm_id is not None:
        payload["swarm_id"] = swarm_id
    rid = client.send("subscribe", payload)
    seen: dict[int, dict[str, Any]] = {}
    for env in client.events():
        data = env.get("data") or {}
        if data.get("request_id") == rid and (env.get("directed") or env.get("event") == "command_rejected"):
            done = expect(env, "subscribed")  # a rejection is logged, not directed: it ends the wait too
            head = int(done.get("head_seq") or env.get("seq") or 0)
            return [e for s, e in sorted(seen.items()) if s <= head], bool(done.get("truncated"))
        if env.get("event") == "usage" and isinstance(env.get("seq"), int):
            seen[env["seq"]] = env  # a live event may also come inside the replay: once by seq
    raise click.ClickException("the router closed the connection")  # pragma: no cover
