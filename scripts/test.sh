#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (Debian's slurm
# packages, chromium, the pinned codex and Claude Code from npm, the Python dev deps), builds
# dist/codeswarm.pyz and runs pytest. Real parts start inside the tests' fixtures and are stopped by PID.
#   scripts/test.sh [pytest args]      e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n== %s\n' "$*" >&2; }

need_apt_update=0
for pkg in slurmctld chromium bindfs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt_update=1
done
if [ "$need_apt_update" = 1 ]; then
  step "apt-get update"
  apt-get update -qq >/dev/null
fi

step "python venv and dev dependencies"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt

step "bindfs (a FUSE mount where inotify is blind, for the mailbox polling test)"
dpkg -s bindfs >/dev/null 2>&1 || apt-get install -y -qq bindfs >/dev/null

step "lint (ruff) and types (mypy)"
bash scripts/lint.sh

step "slurm packages"
bash scripts/install-slurm.sh
step "chromium and playwright"
bash scripts/install-browser.sh
step "codex (pinned, npm)"
CODEX_BIN="$(bash scripts/install-codex.sh)"
export CODEX_BIN
step "claude code (pinned, npm)"
CLAUDE_BIN="$(bash scripts/install-claude.sh)"
export CLAUDE_BIN

step "build dist/codeswarm.pyz"
./build.sh

step "pytest"
# Strict: in this command every real part is installed, so no test may skip for lack of one.
export CODESWARM_TEST_STRICT=1
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "${@:-tests}"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
