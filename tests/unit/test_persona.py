"""Launch bundles are checked completely before anything is submitted (issue 12 #8)."""

from __future__ import annotations

import pytest

from codeswarm.protocol import Command, Rejection
from codeswarm.router.persona import persona_files


def cmd(payload: dict) -> Command:
    return Command(command="swarm_launch", request_id="r1", payload=payload)


def skills(*files: tuple[str, str]) -> Command:
    return cmd({"agents_bundle": {"mode": "directory", "agents_md_content": "# p",
                                  "skills_files": [{"path": p, "content": c} for p, c in files]}})


def test_good_bundle_maps_to_workspace_paths() -> None:
    out = persona_files(skills(("a/b.md", "x"), ("./c//d.md", "y"), ("e\\f.md", "z")))
    assert out == {"AGENTS.md": "# p", ".agents/skills/a/b.md": "x", ".agents/skills/c/d.md": "y",
                   ".agents/skills/e/f.md": "z"}
    assert persona_files(cmd({"agents_md_content": "hi"})) == {"AGENTS.md": "hi"}


@pytest.mark.parametrize("files, words", [
    ((("a", "x"), ("a/b", "y")), "both a file and a directory"),
    ((("a/b", "y"), ("a", "x")), "both as a file and as a directory"),
    ((("a", "x"), ("./a", "y")), "twice"),
    ((("bad\x00name", "x"),), "NUL"),
    ((("n" * 300, "x"),), "at most 255 bytes"),
    ((("é" * 130, "x"),), "at most 255 bytes"),  # 260 bytes in UTF-8
    ((("x\udc80", "x"),), "lone surrogates"),
    ((("ok", "bad \udc80 content"),), "lone surrogates"),
    ((("/etc/x", "x"),), "relative"),
    ((("a/../../x", "x"),), "relative"),
    ((("./", "x"),), "names no file"),
    ((("a\nb", "x"),), "control characters"),
    ((("/".join(["d"] * 20), "x"),), "levels"),
])
def test_bad_bundles_are_refused_with_a_plain_message(files: tuple, words: str) -> None:
    with pytest.raises(Rejection) as exc:
        persona_files(skills(*files))
    assert exc.value.code == "invalid_payload"
    assert words in exc.value.reason and "skills_files[" in exc.value.reason
    assert "Error(" not in exc.value.reason


def test_agents_md_must_be_encodable() -> None:
    with pytest.raises(Rejection, match="agents_md_content"):
        persona_files(cmd({"agents_md_content": "\ud800"}))
