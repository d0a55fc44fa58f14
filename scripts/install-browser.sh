#!/usr/bin/env bash
# Install what the browser tests need (idempotent): Debian's chromium + chromium-driver, and the
# pinned Python `playwright` package into the project venv. `playwright install` is never run:
# there is no internet here, the tests drive /usr/bin/chromium through executable_path.
set -euo pipefail

PLAYWRIGHT_VERSION="1.65.2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser.sh: chromium is missing and installing it needs root (apt-get)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -x "$PY" ]; then
  echo "install-browser.sh: no venv at $VENV (create it first)" >&2
  exit 1
fi
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" 2>/dev/null; then
  "$PY" -m pip install -q "playwright==$PLAYWRIGHT_VERSION"
fi

echo "browser: $(chromium --version 2>/dev/null | head -1); playwright $PLAYWRIGHT_VERSION"
