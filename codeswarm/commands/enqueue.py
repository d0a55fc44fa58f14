"""`codeswarm enqueue`: put a prompt on a swarm's queue (PROTOCOL.md 4.3); prints the queue_id."""

from __future__ import annotations

from typing import Any

import click

from codeswarm.commands.common import (
    config_option,
    connect,
    expect,
    handle_errors,
    json_option,
    print_json,
    prompt_options,
    read_prompt,
)


@click.command(help="Queue a prompt for a swarm: the first idle node takes it (default), or all / some nodes.")
@click.argument("swarm_id")
@prompt_options
@click.option("--selector", type=click.Choice(["idle", "all", "nodes"]), default=None,
              help="Dispatch policy (default: idle, or nodes when --nodes is given).")
@click.option("--nodes", "selector_nodes", default=None, help='Target nodes for --selector nodes: 3, "0,2-4".')
@click.option("--source", "source_swarm_id", default=None, help="Originating swarm (informational).")
@config_option
@json_option
@handle_errors
def command(swarm_id: str, prompt: str | None, prompt_file: str | None, selector: str | None, selector_nodes: str | None,
            source_swarm_id: str | None, config_path: str | None, state_dir: str | None, no_autostart: bool,
            as_json: bool) -> None:
    prompt = read_prompt(prompt, prompt_file)
    if not prompt:
        raise click.BadParameter("must not be empty", param_hint="--prompt")
    if selector is None:
        selector = "nodes" if selector_nodes is not None else "idle"
    if selector == "nodes" and not selector_nodes:
        raise click.BadParameter("--selector nodes needs --nodes", param_hint="--nodes")
    if selector != "nodes" and selector_nodes is not None:
        raise click.BadParameter(f"--nodes only goes with --selector nodes (not {selector})", param_hint="--nodes")
    payload: dict[str, Any] = {"target_swarm_id": swarm_id, "selector": selector, "content": prompt,
                               "source_swarm_id": source_swarm_id}
    if selector == "nodes":
        payload["nodes"] = selector_nodes
    with connect(config_path, state_dir, no_autostart) as client:
        # the router answers with the broadcast inter_swarm_enqueued carrying our request_id
        data = expect(client.request("enqueue_inject", payload), "inter_swarm_enqueued")
    if as_json:
        print_json({"queue_id": data.get("queue_id"), "request_id": data.get("request_id"),
                    "target_swarm_id": data.get("target_swarm_id"), "source_swarm_id": data.get("source_swarm_id"),
                    "selector": data.get("selector"), "nodes": data.get("nodes")})
    else:
        click.echo(data.get("queue_id"))
