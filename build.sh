#!/usr/bin/env bash
# Build dist/codeswarm.pyz: one file that is the CLI, the router and the worker.
# Dependencies are pinned in requirements.txt; shiv bundles them with the package.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
rm -rf build dist/codeswarm.pyz
mkdir -p dist
.venv/bin/shiv -q -c codeswarm -o dist/codeswarm.pyz -p '/usr/bin/env python3' \
  --reproducible --compressed -r requirements.txt . >/dev/null
rm -rf build codeswarm.egg-info
echo "built dist/codeswarm.pyz ($(du -h dist/codeswarm.pyz | cut -f1))"
