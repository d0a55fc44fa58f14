"""`codeswarm budget`: show, set, raise or clear a swarm's spend budget (docs/SPEND.md)."""

from __future__ import annotations

from typing import Any

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json


@click.command(help="Show a swarm's budget, or set it with --usd (raising it lets a stopped swarm go on).")
@click.argument("swarm_id")
@click.option("--usd", type=float, default=None, help="The new budget in US dollars (> 0).")
@click.option("--clear", is_flag=True, help="Remove the budget (no limit).")
@config_option
@json_option
@handle_errors
def command(swarm_id: str, usd: float | None, clear: bool, config_path: str | None, state_dir: str | None,
            no_autostart: bool, as_json: bool) -> None:
    if usd is not None and clear:
        raise click.UsageError("give either --usd or --clear")
    if usd is not None and not 0 < usd <= 1e9:  # also rejects nan
        raise click.BadParameter("must be a number of US dollars > 0", param_hint="--usd")
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        if usd is None and not clear:
            data = expect(client.request("swarm_status", {"swarm_id": swarm_id}), "swarm_status")
        else:
            data = expect(client.request("swarm_budget", {"swarm_id": swarm_id, "budget_usd": None if clear else usd}),
                          "budget_updated")
    if as_json:
        print_json({k: data.get(k) for k in ("swarm_id", "spend_usd", "budget_usd", "budget_state", "cost_unknown")})
        return
    click.echo(describe(data))


def describe(d: dict[str, Any]) -> str:
    spend, budget = d.get("spend_usd") or 0.0, d.get("budget_usd")
    text = f"swarm {d.get('swarm_id')}  spend ${spend:,.4f}" + ("+? (some usage unpriced)" if d.get("cost_unknown") else "")
    if budget is None:
        return text + "  no budget"
    return text + f"  budget ${budget:,.2f} ({spend / budget:.0%})  {d.get('budget_state') or 'ok'}"
