#!/usr/bin/env bash
# Static checks that CI runs before the tests (scripts/test.sh): ruff over the code and the tests,
# mypy (strict) over the pure modules listed in pyproject.toml [tool.mypy]. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check --no-cache codeswarm tests benchmarks
.venv/bin/mypy --no-incremental
