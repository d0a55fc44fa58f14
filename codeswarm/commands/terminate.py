"""`codeswarm terminate`: stop a swarm (idempotent)."""

from __future__ import annotations

import time

import click

from codeswarm.commands.common import Rejected, config_option, connect, handle_errors, json_option, print_json, rejected_message


@click.command(help="Terminate a swarm.")
@click.argument("swarm_id")
@click.option("--wait", is_flag=True, help="Wait until the swarm is terminated.")
@click.option("--force", is_flag=True, help="Skip the graceful wait for running turns.")
@click.option("--archive", is_flag=True, help="Archive every node's workspace before it ends.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait with --wait.")
@config_option
@json_option
@handle_errors
def command(swarm_id: str, wait: bool, force: bool, archive: bool, timeout: float, config_path: str | None,
            state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    payload = {"swarm_id": swarm_id, "terminate_params": {"force": force, "download_workspaces_on_shutdown": archive}}
    deadline = time.monotonic() + timeout
    result: dict = {"swarm_id": swarm_id}
    with connect(config_path, state_dir, no_autostart) as client:
        client.request("subscribe", {"swarm_id": swarm_id, "events": [
            "swarm_status", "swarm_terminated", "workspace_archive_ready", "workspace_archive_failed",
            "command_rejected"]})
        rid = client.send("swarm_terminate", payload)
        for env in client.events(deadline):
            name, data = env.get("event"), env.get("data") or {}
            if data.get("request_id") != rid and not (wait and name == "swarm_terminated"
                                                       and data.get("swarm_id") == swarm_id):
                if name in ("workspace_archive_ready", "workspace_archive_failed") and data.get("swarm_id") == swarm_id:
                    result.setdefault("archives", []).append({"event": name, **data})
                continue
            if name == "command_rejected":
                raise Rejected(rejected_message(env))
            if name in ("workspace_archive_ready", "workspace_archive_failed"):
                result.setdefault("archives", []).append({"event": name, **data})
                continue
            if name == "swarm_terminated":
                result.update(state="terminated", reason=data.get("reason"),
                              already_terminated=bool(data.get("already_terminated")))
                break
            if name == "swarm_status" and not wait:
                result.update(state=data.get("state"))
                break
    if as_json:
        print_json(result)
    else:
        click.echo(f"{swarm_id}: {result.get('state')}" + (f" ({result['reason']})" if result.get("reason") else ""))
        for a in result.get("archives", []):
            where = a.get("archive_path") or f"failed: {a.get('reason')}"
            click.echo(f"  node {a.get('node_id')}: {where}")
