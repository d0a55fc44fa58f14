"""`codeswarm project ...`: orchestrated projects (docs/PROJECTS.md)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from codeswarm.commands.common import (
    EXIT_PARTIAL,
    Rejected,
    TimedOut,
    config_option,
    connect,
    expect,
    handle_errors,
    json_option,
    print_json,
    rejected_message,
)

FINISHED = ("completed", "failed", "cancelled")
WAIT_EVENTS = ["project_completed", "project_failed", "project_cancelled", "project_resumed"]


@click.group(help="Orchestrated projects: a task graph run by swarms, landing as verified git branches.")
def command() -> None:
    pass


def _repo_arg(repo: str) -> str:
    """A local path becomes absolute (the router and the nodes resolve it from elsewhere); URLs stay."""
    if "://" in repo or (":" in repo.split("/")[0] and not os.path.exists(repo)):
        return repo
    return str(Path(repo).expanduser().resolve())


def _read_json(path: str, what: str) -> Any:
    try:
        # orjson, like the router: Python's json reads NaN/Infinity/1e400, which went on as null
        return orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=what) from None
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not valid JSON: {exc}", param_hint=what) from None


def _request(client: Any, command_name: str, payload: dict[str, Any], *names: str, timeout: float = 120) -> dict[str, Any]:
    return expect(client.request(command_name, payload, timeout=timeout), *names)


def _status(client: Any, project_id: str) -> dict[str, Any]:
    return _request(client, "project_status", {"project_id": project_id}, "project_status")["project"]


def status_json(p: dict[str, Any]) -> dict[str, Any]:
    """The documented `project status --json` object."""
    state = p["state"]
    if state == "completed" and not p.get("integration_commit"):
        state = "integrating"
    keep = ("id", "state", "attempts", "branch", "commit", "swarm_id", "node_id", "started_at", "finished_at",
            "error", "kind", "title", "depends_on", "spend_usd", "paths", "timeout_seconds")
    return {"project_id": p["project_id"], "name": p.get("name"), "state": state, "repo": p.get("repo"),
            "base": p.get("base"), "swarms": p.get("swarms"), "error": p.get("error"),
            "integration_branch": p.get("integration_branch"), "integration_commit": p.get("integration_commit"),
            **{k: p.get(k) for k in SPEND_KEYS}, "planner_spend_usd": p.get("planner_spend_usd"),
            "tasks": [{k: t.get(k) for k in keep} for t in p["tasks"]]}


SPEND_KEYS = ("spend_usd", "budget_usd", "budget_state", "cost_unknown", "pricing_model", "total_tokens")


def spend_text(p: dict[str, Any]) -> str:
    """`spend $1.2345 of $10.00 (12%, ok)` (docs/SPEND.md)."""
    spend, budget = p.get("spend_usd") or 0.0, p.get("budget_usd")
    text = f"spend ${spend:,.4f}" + ("+?" if p.get("cost_unknown") else "")
    if budget:
        text += f" of ${budget:,.2f} ({spend / budget:.0%}, {p.get('budget_state') or 'ok'})"
    return text


def _exit_code(p: dict[str, Any]) -> int:
    return 0 if p["state"] == "completed" else EXIT_PARTIAL


def _wait(client: Any, project_id: str, timeout: float | None) -> dict[str, Any]:
    deadline = time.monotonic() + (timeout if timeout is not None else 7 * 86400)
    expect(client.request("subscribe", {"events": WAIT_EVENTS}), "subscribed")
    p = _status(client, project_id)
    if p["state"] in FINISHED:
        return p
    for env in client.events(deadline):
        data = env.get("data") or {}
        if env.get("event") in WAIT_EVENTS and data.get("project_id") == project_id and \
                env.get("event") != "project_resumed":
            break
    return _status(client, project_id)


def _print(p: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(status_json(p))
        return
    click.echo(f"project {p['project_id']}  state {p['state']}  repo {p.get('repo')}  base {p.get('base')}  "
               f"{spend_text(p)}")
    if p.get("error"):
        click.echo(f"error: {p['error']}")
    if p.get("integration_commit"):
        click.echo(f"integration {p['integration_branch']} at {p['integration_commit'][:12]}")
    for t in p["tasks"]:
        where = f"{t['swarm_id'][:8]}/{t['node_id']}" if t.get("swarm_id") else "-"
        err = f"  {t['error'][:100]}" if t.get("error") else ""
        click.echo(f"  {t['id']:<20} {t['state']:<10} attempts {t['attempts']}  node {where:<12} "
                   f"${t.get('spend_usd') or 0:,.4f}  {(t.get('commit') or '')[:12]}{err}")


def _finish(client: Any, project_id: str, wait: bool, timeout: float | None, as_json: bool) -> None:
    if not wait:
        return
    try:
        p = _wait(client, project_id, timeout)
    except TimeoutError:
        raise TimedOut(f"project {project_id} did not finish within {timeout} s") from None
    _print(p, as_json)
    sys.exit(_exit_code(p))


def budget_option(f: Any) -> Any:
    return click.option("--budget-usd", type=float, default=None,
                        help="Spend budget in US dollars (default: the config's budget.default_project_usd): at "
                             "100 % the running task turns stop and no task starts until it is raised.")(f)


def _budget_payload(budget_usd: float | None) -> dict[str, Any]:
    if budget_usd is None:
        return {}
    if not 0 < budget_usd <= 1e9:  # also rejects nan
        raise click.BadParameter("must be a number of US dollars > 0", param_hint="--budget-usd")
    return {"budget_usd": budget_usd}


def wait_options(f: Any) -> Any:
    f = click.option("--timeout", type=float, default=None, help="Seconds to wait (exit 4 when exceeded).")(f)
    return click.option("--wait", is_flag=True, help="Wait until the project finished: exit 0 all tasks "
                        "completed and integrated, 5 some failed or blocked, 4 timeout.")(f)


@command.command("create", help="Create a project from a task graph file (prints the project id).")
@click.option("--repo", required=True, help="Git repository: a local path or any URL git reaches.")
@click.option("--tasks", "tasks_file", required=True, type=click.Path(dir_okay=False), help="Task graph JSON file.")
@click.option("--swarm", "swarms", multiple=True, required=True, help="Worker swarm (repeatable).")
@click.option("--name", default="", help="A name (also the start of the project id).")
@click.option("--base", default="main", show_default=True, help="Branch the tasks start from.")
@click.option("--max-attempts", type=int, default=2, show_default=True, help="Attempts per task.")
@click.option("--start", is_flag=True, help="Start it right away.")
@budget_option
@wait_options
@config_option
@json_option
@handle_errors
def create(repo: str, tasks_file: str, swarms: tuple[str, ...], name: str, base: str, max_attempts: int, start: bool,
           budget_usd: float | None, wait: bool, timeout: float | None, config_path: str | None, state_dir: str | None,
           no_autostart: bool, as_json: bool) -> None:
    graph = _read_json(tasks_file, "--tasks")
    payload = {"repo": _repo_arg(repo), "tasks": graph, "swarms": list(swarms), "name": name, "base": base,
               "max_attempts": max_attempts, "start": start or wait, **_budget_payload(budget_usd)}
    with connect(config_path, state_dir, no_autostart) as client:
        data = _request(client, "project_create", payload, "project_created")
        pid = data["project_id"]
        if as_json and not wait:
            print_json({"project_id": pid, "state": "running" if start else "created"})
        elif not wait:
            click.echo(pid)
        _finish(client, pid, wait, timeout, as_json)


@command.command("plan", help="Have a planner swarm split a spec into a task graph, then create the project.")
@click.option("--repo", required=True)
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False), help="Specification (text).")
@click.option("--planner", required=True, help="Planner swarm (node 0 answers).")
@click.option("--swarm", "swarms", multiple=True, required=True, help="Worker swarm (repeatable).")
@click.option("--name", default="")
@click.option("--base", default="main", show_default=True)
@click.option("--start", is_flag=True)
@click.option("--plan-timeout", type=float, default=1800, show_default=True, help="Seconds for the planner.")
@budget_option
@wait_options
@config_option
@json_option
@handle_errors
def plan(repo: str, spec_file: str, planner: str, swarms: tuple[str, ...], name: str, base: str, start: bool,
         plan_timeout: float, budget_usd: float | None, wait: bool, timeout: float | None, config_path: str | None,
         state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    try:
        spec = Path(spec_file).read_text()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {spec_file}: {exc.strerror}", param_hint="--spec") from None
    payload = {"repo": _repo_arg(repo), "spec": spec, "planner": planner, "swarms": list(swarms), "name": name,
               "base": base, "start": start or wait, **_budget_payload(budget_usd)}
    with connect(config_path, state_dir, no_autostart) as client:
        rid = client.send("project_plan", payload)
        pid = None
        for env in client.events(time.monotonic() + plan_timeout):
            data = env.get("data") or {}
            if data.get("request_id") != rid:
                continue
            if env.get("event") == "project_plan_failed":
                raise Rejected(f"planning failed: {data.get('reason')}")
            if env.get("event") == "command_rejected":
                raise Rejected(rejected_message(env))
            if env.get("event") == "project_created":
                pid = data["project_id"]
                break
        assert pid is not None
        if as_json and not wait:
            print_json({"project_id": pid})
        elif not wait:
            click.echo(pid)
        _finish(client, pid, wait, timeout, as_json)


def _simple(name: str, command_name: str, answer: str, help_: str) -> None:
    @command.command(name, help=help_)
    @click.argument("project_id")
    @wait_options
    @config_option
    @json_option
    @handle_errors
    def run(project_id: str, wait: bool, timeout: float | None, config_path: str | None, state_dir: str | None,
            no_autostart: bool, as_json: bool) -> None:
        with connect(config_path, state_dir, no_autostart) as client:
            if wait:
                expect(client.request("subscribe", {"events": WAIT_EVENTS}), "subscribed")
            _request(client, command_name, {"project_id": project_id}, answer)
            if not wait:
                p = _status(client, project_id)
                if as_json:
                    print_json(status_json(p))
                else:
                    click.echo(f"{project_id}: {p['state']}")
            _finish(client, project_id, wait, timeout, as_json)


_simple("start", "project_start", "project_started", "Start a created project.")
_simple("cancel", "project_cancel", "project_cancelled", "Cancel a project (running turns finish, nothing new starts).")


@command.command("resume", help="Resume a project: reconcile with the repo's branches, re-run what is missing.")
@click.argument("project_id")
@click.option("--swarm", "swarms", multiple=True, help="New worker swarm(s) (repeatable; default: keep).")
@click.option("--retry-failed", is_flag=True, help="Run failed tasks again (attempts start over).")
@wait_options
@config_option
@json_option
@handle_errors
def resume(project_id: str, swarms: tuple[str, ...], retry_failed: bool, wait: bool, timeout: float | None,
           config_path: str | None, state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    payload: dict[str, Any] = {"project_id": project_id, "retry_failed": retry_failed}
    if swarms:
        payload["swarms"] = list(swarms)
    with connect(config_path, state_dir, no_autostart) as client:
        data = _request(client, "project_resume", payload, "project_resumed")
        if not wait:
            if as_json:
                print_json({k: data.get(k) for k in ("project_id", "swarms", "reset", "requeue", "will_run",
                                                     "missing_branches")})
            else:
                click.echo(f"{project_id}: resumed; runs {', '.join(data.get('will_run') or []) or 'nothing new'}")
        _finish(client, project_id, wait, timeout, as_json)


@command.command("resume-preview", help="Print what `project resume` would do; changes nothing.")
@click.argument("project_id")
@click.option("--retry-failed", is_flag=True)
@config_option
@json_option
@handle_errors
def resume_preview(project_id: str, retry_failed: bool, config_path: str | None, state_dir: str | None,
                   no_autostart: bool, as_json: bool) -> None:
    with connect(config_path, state_dir, no_autostart) as client:
        data = _request(client, "project_resume_preview", {"project_id": project_id, "retry_failed": retry_failed},
                        "project_resume_preview")
    if as_json:
        print_json({k: data.get(k) for k in ("project_id", "reset", "requeue", "will_run", "missing_branches",
                                             "reasons", "stopped")})
        return
    click.echo(f"project {project_id}: resume would run {', '.join(data['will_run']) or 'nothing'}")
    for key, what in (("requeue", "re-queued (node gone)"), ("stopped", "stopped now (a dependency re-runs)"),
                      ("missing_branches", "branches missing in the repo")):
        if data.get(key):
            click.echo(f"  {what}: {', '.join(data[key])}")
    reasons = data.get("reasons") or {}
    for tid in data.get("reset") or []:
        click.echo(f"  re-run from scratch: {tid} ({reasons.get(tid, 'reset')})")


@command.command("status", help="Show one project and its tasks.")
@click.argument("project_id")
@config_option
@json_option
@handle_errors
def status(project_id: str, config_path: str | None, state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        p = _status(client, project_id)
    _print(p, as_json)


@command.command("list", help="List projects.")
@config_option
@json_option
@handle_errors
def list_(config_path: str | None, state_dir: str | None, no_autostart: bool, as_json: bool) -> None:
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        projects = _request(client, "project_list", {}, "project_list")["projects"]
    if as_json:
        print_json(projects)
        return
    for p in projects:
        counts = " ".join(f"{k} {v}" for k, v in sorted(p["tasks"].items()))
        click.echo(f"{p['project_id']:<28} {p['state']:<12} {counts}  {spend_text(p)}")


@command.command("budget", help="Show a project's spend budget, or set it with --usd (raising it lets a stopped "
                 "project go on).")
@click.argument("project_id")
@click.option("--usd", type=float, default=None, help="The new budget in US dollars (> 0).")
@click.option("--clear", is_flag=True, help="Remove the budget (no limit).")
@config_option
@json_option
@handle_errors
def budget(project_id: str, usd: float | None, clear: bool, config_path: str | None, state_dir: str | None,
           no_autostart: bool, as_json: bool) -> None:
    if usd is not None and clear:
        raise click.UsageError("give either --usd or --clear")
    payload = {"project_id": project_id, "budget_usd": None if clear else _budget_payload(usd).get("budget_usd")}
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        if usd is None and not clear:
            data = _status(client, project_id)
        else:
            data = _request(client, "project_budget", payload, "budget_updated")
    if as_json:
        print_json({"project_id": project_id, **{k: data.get(k) for k in SPEND_KEYS if k in data}})
        return
    click.echo(f"project {project_id}  {spend_text(data)}" + ("" if data.get("budget_usd") else "  no budget"))
