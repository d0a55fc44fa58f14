"""`codeswarm approve`: answer a node's pending approval request."""

from __future__ import annotations

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json

DECISIONS = {
    "accept": (True, "accept"),
    "accept-for-session": (True, "acceptForSession"),
    "decline": (False, "decline"),
    "cancel": (False, "cancel"),
}


@click.command(help="Answer a pending approval: accept, accept-for-session, decline or cancel.")
@click.argument("swarm_id")
@click.argument("decision", type=click.Choice(list(DECISIONS)))
@click.option("--node", "node_id", type=int, required=True, help="Node index that asked.")
@click.option("--call", "call_id", required=True, help="call_id from exec_approval_required.")
@config_option
@json_option
@handle_errors
def command(swarm_id: str, decision: str, node_id: int, call_id: str, config_path: str | None,
            state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    approved, value = DECISIONS[decision]
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        status = expect(client.request("swarm_status", {"swarm_id": swarm_id}), "swarm_status")
        data = expect(client.request("approve_execution", {"job_id": status["job_id"], "call_id": call_id,
                                                           "node_id": node_id, "approved": approved,
                                                           "decision": value}), "exec_approval_resolved")
    if as_json:
        print_json(data)
    else:
        click.echo(f"node {node_id} call {call_id}: {data.get('decision')}")
