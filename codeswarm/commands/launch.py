"""`codeswarm launch`: submit a swarm and print its id."""

from __future__ import annotations

import functools
from pathlib import Path
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
    read_text_file,
)


def _params(items: tuple[str, ...]) -> dict[str, Any]:
    import orjson

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--param")
        try:
            parsed = orjson.loads(value)
            out[key] = parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
        except orjson.JSONDecodeError:
            out[key] = value
    return out


def _skills(directory: str) -> list[dict[str, str]]:
    """Every regular file under the directory. A symlink is refused, never copied as its target
    (a link to ~/.ssh/id_rsa would otherwise land in every node's workspace)."""
    import os
    import stat

    root = Path(directory)
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise click.BadParameter(f"{p} is a symlink: skills are copied into every workspace, links are "
                                         "refused (copy the file itself into the directory)", param_hint="--skills")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise click.BadParameter(f"{p} is not a regular file", param_hint="--skills")
            try:
                text = p.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise click.BadParameter(f"{p}: skills files must be UTF-8 text", param_hint="--skills") from None
            files.append({"path": p.relative_to(root).as_posix(), "content": text})
    return sorted(files, key=lambda f: f["path"])


@click.command(help="Launch a swarm of N nodes; prints the swarm id.")
@click.option("--nodes", type=click.IntRange(1, 4096), default=1, show_default=True, help="Node count.")
@functools.partial(prompt_options, required=False, what="System prompt, injected into every node as its first turn,")
@click.option("--provider", default=None, help="Launch preset id (default: the config's first).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="provider_params override (repeatable).")
@click.option("--agents-md", type=click.Path(exists=True, dir_okay=False), help="AGENTS.md for every node.")
@click.option("--skills", type=click.Path(exists=True, file_okay=False), help="Directory of skills files.")
@click.option("--alias", default=None, help="Name other swarms use in routing directives (/swarm[alias]/...).")
@click.option("--auto-route", is_flag=True, help="Turn routing directives in this swarm's answers into work.")
@click.option("--budget-usd", type=float, default=None,
              help="Spend budget in US dollars: at 100 % running turns stop and new prompts are refused.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the launch.")
@config_option
@json_option
@handle_errors
def command(nodes: int, prompt: str | None, prompt_file: str | None, provider: str | None, params: tuple[str, ...],
            agents_md: str | None, skills: str | None, alias: str | None, auto_route: bool, budget_usd: float | None,
            timeout: float, config_path: str | None, state_dir: str | None,
            no_autostart: bool, as_json: bool) -> None:
    payload: dict[str, Any] = {"nodes": nodes, "system_prompt": read_prompt(prompt, prompt_file, required=False)}
    if provider:
        payload["provider"] = provider
    if alias:
        payload["alias"] = alias
    if auto_route:
        payload["auto_route"] = True
    if budget_usd is not None:
        if not 0 < budget_usd <= 1e9:  # also rejects nan
            raise click.BadParameter("must be a number of US dollars > 0", param_hint="--budget-usd")
        payload["budget_usd"] = budget_usd
    if params:
        payload["provider_params"] = _params(params)
    md = read_text_file(agents_md, "--agents-md") if agents_md else None
    if skills:
        payload["agents_bundle"] = {"mode": "directory", "agents_md_content": md or "",
                                    "skills_files": _skills(skills)}
    elif md is not None:
        payload["agents_md_content"] = md
    with connect(config_path, state_dir, no_autostart) as client:
        data = expect(client.request("swarm_launch", payload, timeout=timeout), "swarm_launched")
    if as_json:
        print_json({"swarm_id": data["swarm_id"], "job_id": data["job_id"], "node_count": data["node_count"],
                    "status": "running", "state": data.get("state", "pending"), "provider_id": data.get("provider_id")})
    else:
        click.echo(data["swarm_id"])
