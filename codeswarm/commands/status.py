"""`codeswarm status`: one swarm and its nodes."""

from __future__ import annotations

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json


@click.command(help="Show one swarm and its nodes.")
@click.argument("swarm_id")
@config_option
@json_option
@handle_errors
def command(swarm_id: str, config_path: str | None, state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        data = expect(client.request("swarm_status", {"swarm_id": swarm_id}), "swarm_status")
    if as_json:
        print_json(data)
        return
    click.echo(f"swarm {data['swarm_id']}  state {data.get('state')}  job {data['job_id']}  "
               f"provider {data.get('provider_id')} ({data.get('provider')})")
    if data.get("spend_usd") is not None:
        click.echo(spend_line(data))
    if data.get("termination_reason"):
        click.echo(f"terminated: {data['termination_reason']}")
    if data.get("error"):
        click.echo(f"last scheduler query failed: {data['error']}")
    for n in data.get("nodes") or []:
        spend = f"  ${n['spend_usd']:,.4f}" if isinstance(n.get("spend_usd"), (int, float)) else ""
        click.echo(f"  node {n['node_id']:>3}  worker {n['worker']:11}  busy {str(n['busy']).lower():5}  "
                   f"open {n['outstanding']}  host {n.get('hostname') or '-'}{spend}")


def spend_line(d: dict) -> str:
    """`spend $1.2345 of $10.00 (12%, ok)  model gpt-5.4`; `+?` marks usage of an unpriced model."""
    text = f"spend ${d['spend_usd']:,.4f}" + ("+?" if d.get("cost_unknown") else "")
    budget = d.get("budget_usd")
    if budget:
        text += f" of ${budget:,.2f} ({d['spend_usd'] / budget:.0%}, {d.get('budget_state') or 'ok'})"
    return text + f"  model {d.get('pricing_model') or '-'}"
