#!/usr/bin/env bash
# install-codex.sh -- install the pinned Codex CLI (@openai/codex) into a project-local directory.
#
# Prints the path of the NATIVE `codex` binary on stdout (and nothing else there), so callers can do
# CODEX_BIN="$(scripts/install-codex.sh)". Idempotent: when the pinned version is already installed it
# only prints the path. Needs node + npm and the npm registry; fails with a message on stderr (exit 1)
# otherwise, and callers (scripts/test.sh) treat that as "skip the codex tests".
#
# Why the native binary and not the `codex` JS shim: on Node 20 the shim cannot execve, so it stays a
# parent process that forwards only a few signals; SIGKILL to it orphans codex (notes P13).
# Why a pinned version: the app-server surface changes quickly and is marked experimental (notes P1);
# the normalizer and tests/codex/ were verified with 0.169.0. Upgrade them together.
#   CODEX_VERSION         override the pin
#   CODESWARM_TOOLS_DIR   install root (default: <repo>/.tools); the package goes to $root/codex-$VERSION
set -euo pipefail

VERSION="${CODEX_VERSION:-0.169.0}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${CODESWARM_TOOLS_DIR:-$REPO/.tools}"
DEST="$ROOT/codex-$VERSION"
log() { printf '[install-codex] %s\n' "$*" >&2; }

case "$(uname -m)" in
    x86_64|amd64) TRIPLE="x86_64-unknown-linux-musl"; PLATFORM="linux-x64" ;;
    aarch64|arm64) TRIPLE="aarch64-unknown-linux-musl"; PLATFORM="linux-arm64" ;;
    *) TRIPLE=""; PLATFORM="" ;;
esac

find_bin() {
    local mods="$DEST/node_modules/@openai" cand
    if [ -n "$TRIPLE" ]; then
        # The platform package is an npm alias (@openai/codex@$VERSION-$PLATFORM) installed here:
        for cand in "$mods/codex-$PLATFORM/vendor/$TRIPLE/bin/codex" \
                    "$mods/codex/vendor/$TRIPLE/bin/codex" \
                    "$mods/codex/vendor/$TRIPLE/codex/codex"; do
            if [ -f "$cand" ] && [ -x "$cand" ]; then printf '%s\n' "$cand"; return 0; fi
        done
    fi
    # Layouts move between releases: fall back to any native codex ELF under the install.
    cand="$(find "$mods" -path '*/vendor/*' -type f -name codex -perm -u+x 2>/dev/null | head -n 1)"
    if [ -n "$cand" ]; then printf '%s\n' "$cand"; return 0; fi
    return 1
}

installed_version() {
    node -e 'try{console.log(require(process.argv[1]).version)}catch(e){}' \
        "$DEST/node_modules/@openai/codex/package.json" 2>/dev/null || true
}

if [ -d "$DEST" ] && [ "$(installed_version)" = "$VERSION" ] && bin="$(find_bin)"; then
    printf '%s\n' "$bin"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { log "npm not found: install Node.js >= 18 and npm"; exit 1; }
mkdir -p "$DEST"
log "installing @openai/codex@$VERSION into $DEST (about 400 MB)"
# --no-fund/--no-audit: no extra registry calls.
if ! npm install --prefix "$DEST" --no-fund --no-audit --no-save --loglevel=error \
        "@openai/codex@$VERSION" >&2; then
    log "npm install failed"
    exit 1
fi
if ! bin="$(find_bin)"; then
    log "installed, but no native codex binary found under $DEST/node_modules/@openai"
    exit 1
fi
got="$("$bin" --version 2>/dev/null || true)"
case "$got" in
    *"$VERSION"*) ;;
    *) log "warning: $bin reports '$got', expected $VERSION" ;;
esac
printf '%s\n' "$bin"
