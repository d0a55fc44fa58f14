"""Routing directives in a node's final answer (issue 8; grammar in docs/QUEUES.md).

Pure: text in, Directive records out. core/queue.py decides what to do with them (queue
them for another swarm, send a reply back, or emit auto_route_ignored).

Grammar, one directive per line (leading whitespace allowed; a line wrapped in single
backticks is unwrapped first, because models like to format commands as inline code):

    /swarm[ALIAS]/idle PROMPT          first idle node of the swarm with that alias (queued)
    /swarm[ALIAS]/first-idle PROMPT    the same (upstream spelling)
    /swarm[ALIAS]/all PROMPT           every node of that swarm
    /swarm[ALIAS]/node[0,2-4] PROMPT   those nodes (the selector is checked by the router)
    /swarm[ALIAS]/<any of these>/reply PROMPT
                                       the same, and the answer should come back (reply=True)
    /reply PROMPT                      back to the node that originated the injection being
                                       answered (target None, selector "reply")

The prompt is the rest of the directive's line plus the lines that follow it, up to (not
including) the next directive, a blank line, or a code-fence line (```), so a multi-line prompt
is written as one paragraph. A directive whose prompt is empty is not a directive. Keywords and
aliases are case-sensitive; an alias is 1-64 characters of [A-Za-z0-9_.-] starting with a letter
or digit. Anything else - including `/swarm[...]` in the middle of a line - is plain text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SELECTORS = ("idle", "all", "nodes", "reply")

_SWARM = re.compile(
    r"/swarm\[(?P<alias>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})\]"
    r"/(?:(?P<kw>idle|first-idle|all)|node\[(?P<nodes>[0-9][0-9,\s\-]*)\])"
    r"(?P<reply>/reply)?"
    r"(?:[ \t]+(?P<rest>.*))?\Z"
)
_REPLY = re.compile(r"/reply(?:[ \t]+(?P<rest>.*))?\Z")


@dataclass(frozen=True)
class Directive:
    target: str | None  # swarm alias; None for /reply
    selector: str  # idle | all | nodes | reply
    nodes: str | None  # selector string such as "0,2-4" (whitespace removed) for "nodes"
    content: str  # the prompt, stripped; never empty
    line_no: int  # 1-based line of the directive in the answer
    reply: bool = False  # /swarm[...]/.../reply: the target's answer should come back to the sender


def _unwrap(line: str) -> str:
    s = line.strip()
    if len(s) >= 2 and s[0] == "`" and s[-1] == "`" and not s.startswith("``"):
        s = s[1:-1].strip()
    return s


def _head(line: str) -> tuple[str | None, str, str | None, bool, str] | None:
    """(target, selector, nodes, reply, rest-of-line) if the line starts a directive."""
    s = _unwrap(line)
    if not s.startswith("/"):
        return None
    m = _SWARM.match(s)
    if m is not None:
        kw = m.group("kw")
        if kw is None:
            selector, nodes = "nodes", "".join(m.group("nodes").split())
        else:
            selector, nodes = ("idle" if kw == "first-idle" else kw), None
        return m.group("alias"), selector, nodes, m.group("reply") is not None, m.group("rest") or ""
    m = _REPLY.match(s)
    if m is not None:
        return None, "reply", None, False, m.group("rest") or ""
    return None


def _ends_paragraph(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("```") or s.startswith("~~~")


def parse_directives(text: str) -> list[Directive]:
    """Every directive in `text`, in order. Never raises; non-directive lines are ignored."""
    if not isinstance(text, str) or "/" not in text:
        return []
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    out: list[Directive] = []
    i = 0
    while i < len(lines):
        head = _head(lines[i])
        if head is None:
            i += 1
            continue
        target, selector, nodes, reply, rest = head
        start = i
        parts = [rest.strip()]
        i += 1
        while i < len(lines) and not _ends_paragraph(lines[i]) and _head(lines[i]) is None:
            parts.append(lines[i].rstrip())
            i += 1
        content = "\n".join(parts).strip()
        if content:
            out.append(Directive(target, selector, nodes, content, start + 1, reply))
    return out


def directive_key(injection_id: str, d: Directive) -> str:
    """A dedup key that is the same every time the same answer is parsed (also after a restart)."""
    ident = "\x1f".join((d.target or "", d.selector, d.nodes or "", "r" if d.reply else "", d.content))
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{injection_id}:{d.line_no}:{digest}"
