"""`codeswarm providers`: the launch presets of the router's config."""

from __future__ import annotations

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json


@click.command(help="List launch providers (presets).")
@config_option
@json_option
@handle_errors
def command(config_path: str | None, state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        data = expect(client.request("providers_list"), "providers_list")
    if as_json:
        print_json(data["providers"])
        return
    for p in data["providers"]:
        mode = (p.get("defaults") or {}).get("worker_mode", "codex")
        click.echo(f"{p['id']:24} {p['backend']:6} {mode:7} {p.get('label')}")
