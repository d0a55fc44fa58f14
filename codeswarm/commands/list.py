"""`codeswarm list`: every swarm the router retains."""

from __future__ import annotations

import time

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json


@click.command(name="list", help="List swarms (terminated ones stay listed for the retention TTL).")
@config_option
@json_option
@handle_errors
def command(config_path: str | None, state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        data = expect(client.request("swarm_list"), "swarm_list")
    swarms = data.get("swarms") or {}
    if as_json:
        print_json(swarms)
        return
    if not swarms:
        click.echo("no swarms")
        return
    click.echo(f"{'SWARM':36}  {'STATE':11}  {'NODES':>5}  {'PROVIDER':14}  {'JOB':16}  {'AGE':4}  SPEND")
    now = time.time()
    for sid, s in sorted(swarms.items(), key=lambda kv: kv[1].get("created_at") or 0):
        age = _age(now - (s.get("created_at") or now))
        click.echo(f"{sid:36}  {s.get('state', s.get('status')):11}  {s.get('node_count'):>5}  "
                   f"{str(s.get('provider_id')):14}  {str(s.get('job_id')):16}  {age:4}  {_spend(s)}")


def _spend(s: dict) -> str:
    if not isinstance(s.get("spend_usd"), (int, float)):
        return "-"
    text = f"${s['spend_usd']:,.2f}" + ("+?" if s.get("cost_unknown") else "")
    if s.get("budget_usd"):
        text += f"/{s['budget_usd']:,.2f}" + (" EXCEEDED" if s.get("budget_state") == "exceeded" else "")
    return text


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h"
