"""Layering: the core is pure and every arrow points inward; no import cycle anywhere.

An AST import graph of codeswarm/ (every import statement, also function-local and
TYPE_CHECKING ones, which hide cycles without removing them):
- modules in codeswarm.core import only the standard library's pure parts, other core modules
  and the shared pure leaf modules (protocol, errors); those leaves obey the same ban;
- no strongly connected component with more than one module (or a self-import) exists.
The checker runs over the real tree, and over a temporary copy with a deliberately added
`import trio` in a core module (and one with an added cycle) to show that it catches them.
"""

from __future__ import annotations

import ast
import shutil
import time
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from codeswarm.protocol import iso_timestamp

ROOT = Path(__file__).resolve().parents[2] / "codeswarm"

CORE = "codeswarm.core"
SHARED_PURE = {"codeswarm.protocol", "codeswarm.errors",  # leaves the core may use
               "codeswarm.spend", "codeswarm.spend.pricing", "codeswarm.spend.meter", "codeswarm.spend.budget"}
PURE_STDLIB = {"__future__", "abc", "bisect", "collections", "dataclasses", "decimal", "enum", "functools", "hashlib",
               "heapq", "itertools", "math", "operator", "re", "types", "typing"}
PURE_THIRD_PARTY = {"orjson"}  # a pure serializer, allowed in the shared leaves only


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path, modules: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file; codeswarm names resolved to modules."""
    me = module_name(root, path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{a.name}"
                out.append((sub if sub in modules else mod, node.lineno))
    return out


def graph(root: Path) -> tuple[dict[str, list[tuple[str, int]]], dict[str, Path]]:
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    return {m: imports_of(root, p, set(files)) for m, p in files.items()}, files


def purity_problems(root: Path) -> list[str]:
    edges, _files = graph(root)
    problems = []
    checked = {m for m in edges if m == CORE or m.startswith(CORE + ".")} | SHARED_PURE
    for mod in sorted(checked & set(edges)):
        for target, line in edges[mod]:
            top = target.split(".")[0]
            if target.startswith("codeswarm"):
                ok = target == CORE or target.startswith(CORE + ".") or target in SHARED_PURE or target == "codeswarm"
            else:
                ok = top in PURE_STDLIB or (mod in SHARED_PURE and top in PURE_THIRD_PARTY)
            if not ok:
                problems.append(f"{mod}:{line} imports {target}")
    return problems


def cycles(root: Path) -> list[list[str]]:
    """Strongly connected components (Tarjan) of more than one module, or a module importing itself."""
    edges, files = graph(root)
    adj = {m: sorted({t for t, _ in edges[m] if t in files}) for m in edges}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in adj[v]:
                found.append(sorted(comp))

    for v in sorted(adj):
        if v not in index:
            visit(v)
    return found


# ---------------------------------------------------------------- the real tree


def test_the_core_imports_nothing_impure_and_nothing_of_the_shell() -> None:
    assert purity_problems(ROOT) == []


def test_there_is_no_import_cycle_in_codeswarm() -> None:
    assert cycles(ROOT) == []


def test_the_checker_sees_the_core_and_its_shell() -> None:
    edges, _ = graph(ROOT)
    assert {"codeswarm.core.kernel", "codeswarm.core.lifecycle", "codeswarm.router.app"} <= set(edges)
    assert ("codeswarm.core", 0) not in edges["codeswarm.router.app"]
    assert any(t == "codeswarm.core.kernel" for t, _ in edges["codeswarm.router.app"])  # shell -> core


# ---------------------------------------------------------------- the checker catches what it must


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "codeswarm"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "static"))
    return root


def test_an_added_import_trio_in_a_core_module_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    states = root / "core" / "states.py"
    states.write_text(states.read_text() + "\nimport trio  # deliberately impure\n")
    assert [p for p in purity_problems(root) if p.endswith("imports trio")] == [
        f"codeswarm.core.states:{len(states.read_text().splitlines())} imports trio"]


def test_function_local_clock_uuid_and_shell_imports_in_core_are_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    kernel = root / "core" / "kernel.py"
    kernel.write_text(kernel.read_text() + "\n\ndef _sneaky():\n    import time, uuid\n"
                      "    from codeswarm.router import app\n    from os import path\n")
    found = {p.split(" imports ")[1] for p in purity_problems(root) if p.startswith("codeswarm.core.kernel:")}
    assert found == {"time", "uuid", "codeswarm.router.app", "os"}


def test_an_impure_import_in_a_shared_leaf_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    errors = root / "errors.py"
    errors.write_text(errors.read_text() + "\nimport random\n")
    assert any(p.startswith("codeswarm.errors:") and p.endswith("imports random") for p in purity_problems(root))


def test_an_added_cycle_is_caught_even_under_type_checking(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    conn = root / "router" / "connection.py"
    conn.write_text(conn.read_text() + "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from codeswarm.router.app import Router\n")
    assert ["codeswarm.router.app", "codeswarm.router.connection"] in cycles(root)


# ---------------------------------------------------------------- protocol.iso_timestamp without a clock module


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(st.floats(0, 4_102_444_800, allow_nan=False))
@example(0.0)
@example(951_782_400.5)  # 2000-02-29
@example(4_102_444_799.999_999)
def test_iso_timestamp_matches_gmtime(epoch: float) -> None:
    t = time.gmtime(epoch)
    assert iso_timestamp(epoch) == "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, int((epoch % 1) * 1_000_000))
