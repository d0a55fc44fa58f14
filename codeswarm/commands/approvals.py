"""`codeswarm approvals`: the approvals waiting for an answer (approvals_list), oldest first."""

from __future__ import annotations

import time

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json
from codeswarm.commands.list import _age
from codeswarm.commands.queue import _epoch


@click.command(help="Show the approvals waiting for an answer (oldest first); answer them with "
                    "`codeswarm approve`. --json prints them as a JSON array.")
@click.option("--swarm", "swarm_id", default=None, help="Only this swarm's approvals.")
@config_option
@json_option
@handle_errors
def command(swarm_id: str | None, config_path: str | None, state_dir: str | None, no_autostart: bool,
            as_json: bool) -> None:
    payload = {"swarm_id": swarm_id} if swarm_id else {}
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        data = expect(client.request("approvals_list", payload), "approvals_list")
    items = list(data.get("approvals") or [])
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no approvals are waiting")
        return
    click.echo(f"{'SWARM':36}  {'NODE':>4}  {'CALL_ID':24}  {'KIND':11}  {'AGE':>5}  COMMAND")
    now = time.time()
    for a in items:
        created = _epoch(a.get("created_at"))
        age = _age(max(0.0, now - created)) if created is not None else "?"
        command = a.get("command")
        text = " ".join(command) if isinstance(command, list) else str(command if command is not None else "")
        text = " ".join(text.split())
        text = text if len(text) <= 60 else text[:57] + "..."
        click.echo(f"{str(a.get('swarm_id')):36}  {str(a.get('node_id')):>4}  {str(a.get('call_id'))[:24]:24}  "
                   f"{str(a.get('kind') or 'command'):11}  {age:>5}  {text}")
