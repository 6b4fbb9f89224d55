#!/usr/bin/env bash
# Install the real Claude Code CLI for the end-to-end tests (tests/test_claude_e2e.py), once.
#
# The npm package brings a ~360 MB native binary, so it goes into a cache directory that is reused
# on the next run instead of into the repository or the global npm prefix. Prints the absolute
# path of the `claude` executable on stdout (everything else goes to stderr), so CI can do:
#
#     CLAUDE_NOTIFY_TEST_CLAUDE=$(scripts/install_claude_cli.sh)
#
# Environment: CLAUDE_CLI_DIR (install prefix), CLAUDE_CLI_VERSION (npm version or tag; default
# the pinned version below, whose hook payloads the tests were written against — a test fails
# loudly when a new version changes them: tests/test_claude_hook_schema.py). An existing install
# of another version is replaced; CLAUDE_CLI_VERSION=latest keeps whatever is installed.
set -euo pipefail

PINNED=2.1.332
prefix=${CLAUDE_CLI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/claude-notify-test/claude-cli}
version=${CLAUDE_CLI_VERSION:-$PINNED}
claude="$prefix/node_modules/.bin/claude"

installed_version() {
  # `claude --version` works offline; the first word is the version ("2.1.328 (Claude Code)").
  DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    "$claude" --version 2>/dev/null | awk 'NR == 1 {print $1}'
}

current=""
if [[ -x "$claude" ]]; then
  current=$(installed_version || true)
fi

if [[ -z "$current" || ( -n "$version" && "$version" != latest && "$version" != "$current" ) ]]; then
  command -v npm >/dev/null || { echo "install_claude_cli: npm is not on PATH (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$prefix"
  echo "== installing @anthropic-ai/claude-code${version:+@$version} into $prefix" >&2
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@${version:-latest}" >&2
  current=$(installed_version || true)
  if [[ -z "$current" ]]; then
    echo "install_claude_cli: $claude does not run after the install" >&2
    exit 1
  fi
fi

echo "== claude $current at $claude" >&2
echo "$claude"
