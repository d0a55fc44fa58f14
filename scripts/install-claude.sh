#!/usr/bin/env bash
# install-claude.sh -- install the pinned Claude Code CLI into a project-local directory.
#
# Prints the path of the native `claude` binary on stdout (and nothing else there), so callers can
# do CLAUDE_BIN="$(scripts/install-claude.sh)". Idempotent: when the pinned version is already
# installed it only prints the path. Needs node + npm and the npm registry; fails with a message
# on stderr (exit 1) otherwise, and callers (scripts/test.sh) treat that as "skip the claude tests".
#
# Why a pinned version: the stream-json output and the offline behaviour (fake Messages API via
# ANTHROPIC_BASE_URL) were verified with 2.1.197 (docs/notes: Claude Code section). Upgrade together
# with tests/claude/ fixtures.
#   CLAUDE_CODE_VERSION   override the pin
#   CODESWARM_TOOLS_DIR   install root (default: <repo>/.tools); the package goes to $root/claude-code-$VERSION
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.197}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${CODESWARM_TOOLS_DIR:-$REPO/.tools}"
DEST="$ROOT/claude-code-$VERSION"
log() { printf '[install-claude] %s\n' "$*" >&2; }

find_bin() {
    # Prefer the native ELF (the JS wrapper adds startup time and an extra parent process). The
    # postinstall hard-links bin/claude.exe to the platform package's binary; when it did not run,
    # bin/claude.exe is only a stub, so every candidate must report the pinned version.
    local mods="$DEST/node_modules/@anthropic-ai" cand
    for cand in "$mods/claude-code/bin/claude.exe" "$mods"/claude-code-linux-*/claude "$DEST/node_modules/.bin/claude"; do
        if [ -f "$cand" ] && [ -x "$cand" ] && \
           DISABLE_AUTOUPDATER=1 timeout 60 "$cand" --version 2>/dev/null | grep -qF "$VERSION"; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    return 1
}

installed_version() {
    node -e 'try{console.log(require(process.argv[1]).version)}catch(e){}' \
        "$DEST/node_modules/@anthropic-ai/claude-code/package.json" 2>/dev/null || true
}

if [ -d "$DEST" ] && [ "$(installed_version)" = "$VERSION" ] && bin="$(find_bin)"; then
    printf '%s\n' "$bin"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { log "npm not found: install Node.js >= 18 and npm"; exit 1; }
mkdir -p "$DEST"
log "installing @anthropic-ai/claude-code@$VERSION into $DEST"
# --no-fund/--no-audit: no extra registry calls; DISABLE_AUTOUPDATER keeps postinstall quiet.
if ! DISABLE_AUTOUPDATER=1 npm install --prefix "$DEST" --no-fund --no-audit --no-save \
        --loglevel=error "@anthropic-ai/claude-code@$VERSION" >&2; then
    log "npm install failed"
    exit 1
fi
if ! bin="$(find_bin)"; then
    log "installed, but no claude binary found under $DEST"
    exit 1
fi
printf '%s\n' "$bin"
