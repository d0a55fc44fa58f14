"""The lazy command group: a command module that fails to import is an error the user can act on,
not "No such command" (issue 11). The broken module is a real file imported for real."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from codeswarm import cli, commands


@pytest.fixture
def broken_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "broken.py").write_text("import codeswarm_no_such_dependency  # noqa: F401\n")
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(tmp_path)])
    monkeypatch.setitem(cli.COMMANDS, "broken", "A command whose module cannot import.")
    return "broken"


def test_an_import_error_inside_a_command_module_is_reported(broken_command: str) -> None:
    result = CliRunner().invoke(cli.cli, [broken_command])
    assert result.exit_code == 1  # "unexpected error" (cli.py's exit codes), not 2 (usage)
    assert "No such command" not in result.output
    assert "cannot load the `broken` command" in result.output
    assert "codeswarm_no_such_dependency" in result.output


def test_an_unknown_command_is_still_a_usage_error() -> None:
    result = CliRunner().invoke(cli.cli, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output


def test_every_listed_command_loads() -> None:
    for name in cli.COMMANDS:
        assert cli.cli.get_command(None, name) is not None  # type: ignore[arg-type]
