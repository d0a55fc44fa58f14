"""AGENTS.md and skills files of a launch (PROTOCOL.md 4.1), checked completely before submit.

Issue 12 #8: a bundle that could not be written (skills `a` and `a/b`, a NUL byte, a 300-character
name, a lone surrogate) used to fail only after the provider had started the workers. Everything
that writing the files can trip on is checked here, so the launch is refused while nothing exists.
"""

from __future__ import annotations

from typing import Any

from codeswarm.protocol import Command, Rejection

SKILLS_DIR = ".agents/skills"
MAX_SKILLS_FILES = 1000
MAX_NAME_BYTES = 255  # NAME_MAX of Linux filesystems
MAX_PATH_BYTES = 1024  # well under PATH_MAX once the workspace root is prepended
MAX_DEPTH = 16


def persona_files(cmd: Command) -> dict[str, str]:
    """Workspace-relative path -> content of every file to write into each node's workspace."""

    def bad(field: str, problem: str) -> Rejection:
        return Rejection("invalid_payload", f"{field}: {problem}", request_id=cmd.request_id, command=cmd.command)

    files: dict[str, str] = {}
    bundle = cmd.payload.get("agents_bundle")
    if bundle is None:
        md = cmd.payload.get("agents_md_content")
        _check_content(md, "agents_md_content", bad)
        if md:
            files["AGENTS.md"] = md
        return files
    if not isinstance(bundle, dict):
        raise bad("agents_bundle", "must be an object")
    md = bundle.get("agents_md_content")
    _check_content(md, "agents_bundle.agents_md_content", bad)
    if md:
        files["AGENTS.md"] = md
    if bundle.get("mode") != "directory":
        return files
    skills = bundle.get("skills_files") or []
    if not isinstance(skills, list):
        raise bad("agents_bundle.skills_files", "must be a list")
    if len(skills) > MAX_SKILLS_FILES:
        raise bad("agents_bundle.skills_files", f"at most {MAX_SKILLS_FILES} files")
    dirs: set[str] = set()
    skill_files: dict[str, str] = {}
    for i, f in enumerate(skills):
        field = f"agents_bundle.skills_files[{i}]"
        path = f.get("path") if isinstance(f, dict) else None
        content = f.get("content") if isinstance(f, dict) else None
        if not isinstance(path, str) or not isinstance(content, str) or not path:
            raise bad(field, "needs path and content (strings)")
        _check_content(content, field + ".content", bad)
        parts = _path_parts(path, field + ".path", bad)
        rel = "/".join(parts)
        if rel in skill_files or rel in dirs:
            raise bad(field + ".path", f"{rel!r} is given twice, or both as a file and as a directory")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in skill_files:
                raise bad(field + ".path", f"{prefix!r} is both a file and a directory")
            dirs.add(prefix)
        skill_files[rel] = content
    files.update({f"{SKILLS_DIR}/{rel}": content for rel, content in skill_files.items()})
    return files


def _path_parts(path: str, field: str, bad: Any) -> list[str]:
    if "\x00" in path:
        raise bad(field, "must not contain a NUL byte")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise bad(field, "must not contain control characters")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(field, "must be valid Unicode (no lone surrogates)") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise bad(field, f"at most {MAX_PATH_BYTES} bytes")
    raw = path.replace("\\", "/").split("/")
    if path.startswith("/") or ".." in raw:
        raise bad(field, "must be relative without '..'")
    parts = [p for p in raw if p not in ("", ".")]
    if not parts:
        raise bad(field, "names no file")
    if len(parts) > MAX_DEPTH:
        raise bad(field, f"at most {MAX_DEPTH} directory levels")
    for part in parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise bad(field, f"each name at most {MAX_NAME_BYTES} bytes (one has {len(part.encode('utf-8'))})")
    return parts


def _check_content(content: Any, field: str, bad: Any) -> None:
    if content is None:
        return
    if not isinstance(content, str):
        raise bad(field, "must be a string")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(field, "must be valid Unicode (no lone surrogates)") from None
