"""What the lean worker imports: its start-up is most of a launch (four Python start-ups on two
cores, issue 13: launch <= 150 ms), so modules it does not need must stay out of its path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import codeswarm.worker.start, codeswarm.worker.lean, codeswarm.worker.runtimes.mock
from codeswarm.worker.runtimes.mock import parse_markers, env_digests
assert parse_markers("plain prompt") == {} and env_digests("plain prompt") == ""
assert parse_markers("a [mock:fail] b [mock:delay=0.5]") == {"fail": 1.0, "delay": 0.5}
print(" ".join(sorted(sys.modules)))
"""


def test_the_lean_worker_path_imports_neither_typing_nor_orjson_nor_trio() -> None:
    # -S and the source tree on PYTHONPATH: exactly how the local provider starts a worker
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-S", "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert "codeswarm.worker.lean" in out
    for heavy in ("typing", "contextlib", "dataclasses", "orjson", "trio", "click", "inspect"):
        assert heavy not in out, f"the lean worker imports {heavy}"
