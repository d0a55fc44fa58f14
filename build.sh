#!/usr/bin/env bash
# Build dist/codeswarm.pyz: one file that is the CLI, the router and the worker.
# Dependencies are pinned in requirements.txt; shiv bundles them with the package.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
mkdir -p dist
# Concurrent builds (parallel test sessions) serialize here; the result appears atomically.
exec 9>dist/.build.lock
flock 9
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    # Debian splits venv/ensurepip out of python3
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      echo "build.sh: python3 venv support is missing: sudo apt-get install python3-venv" >&2; exit 1
    fi
  fi
  "$PY" -m venv .venv
fi
# shiv is the only build tool; the runtime deps come from requirements.txt inside the .pyz
.venv/bin/python -c 'import shiv' 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check "shiv==1.0.8"
rm -rf build
.venv/bin/shiv -q -c codeswarm -o dist/codeswarm.pyz.tmp -p '/usr/bin/env python3' \
  --reproducible --compressed --compile-pyc -r requirements.txt . >/dev/null
# shiv's bootstrap costs ~40 ms per start once unpacked: a fast path takes over (scripts/pyz_main.py)
.venv/bin/python scripts/pyz_fastpath.py dist/codeswarm.pyz.tmp
mv -f dist/codeswarm.pyz.tmp dist/codeswarm.pyz
rm -rf build codeswarm.egg-info
echo "built dist/codeswarm.pyz ($(du -h dist/codeswarm.pyz | cut -f1))"
