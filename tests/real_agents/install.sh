#!/usr/bin/env bash
# Install the five AI coding CLIs that logist's adapters drive, at the pinned versions below,
# into a local prefix (default: .real-agents/ at the repository root, ignored by git):
#   npm packages into   PREFIX/npm   (binaries in PREFIX/npm/node_modules/.bin)
#   aider into its venv PREFIX/aider-venv (binary PREFIX/aider-venv/bin/aider)
# PREFIX/bin gets one symlink per CLI; the real-agent tests (pytest -m real_agents) put it
# first on PATH. Usage: tests/real_agents/install.sh [PREFIX]
# Environment: LOGIST_REAL_AGENTS_PREFIX (the prefix), LOGIST_REAL_AGENTS_ONLY="codex gemini"
# (install a subset). A CLI that cannot be installed is reported and skipped; the script
# exits non-zero only when none could be installed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="${1:-${LOGIST_REAL_AGENTS_PREFIX:-$root/.real-agents}}"
only="${LOGIST_REAL_AGENTS_ONLY:-claude codex gemini cline aider}"

# The pinned versions (tests/real_agents/versions.txt is the one list; keep them in sync with
# the compatibility table in docs/agents.md).
declare -A NPM_PKG=(
  [claude]="@anthropic-ai/claude-code"
  [codex]="@openai/codex"
  [gemini]="@google/gemini-cli"
  [cline]="cline"
)
declare -A VERSION
while read -r name version; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  VERSION[$name]="$version"
done < "$here/versions.txt"

mkdir -p "$prefix/bin" "$prefix/npm"
installed=0
failed=()

have_version() {  # have_version NAME: the installed CLI reports the pinned version
  local out
  out="$(timeout 60 "$prefix/bin/$1" --version 2>/dev/null </dev/null)" || return 1
  [[ "$out" == *"${VERSION[$1]}"* ]]
}

for name in $only; do
  if [[ -z "${VERSION[$name]:-}" ]]; then
    echo "install.sh: unknown CLI '$name' (known: claude codex gemini cline aider)" >&2
    exit 2
  fi
  if [[ -x "$prefix/bin/$name" ]] && have_version "$name"; then
    echo "install.sh: $name ${VERSION[$name]} already installed"
    installed=$((installed + 1))
    continue
  fi
  echo "install.sh: installing $name ${VERSION[$name]}"
  if [[ "$name" == aider ]]; then
    if python3 -m venv "$prefix/aider-venv" \
       && timeout 900 "$prefix/aider-venv/bin/python" -m pip install --quiet \
            "aider-chat==${VERSION[aider]}" >"$prefix/aider-install.log" 2>&1; then
      ln -sfn "$prefix/aider-venv/bin/aider" "$prefix/bin/aider"
    else
      echo "install.sh: aider failed to install (see $prefix/aider-install.log)" >&2
      failed+=(aider); continue
    fi
  else
    pkg="${NPM_PKG[$name]}@${VERSION[$name]}"
    if timeout 900 npm install --prefix "$prefix/npm" --no-audit --no-fund --loglevel=error \
         "$pkg" >"$prefix/$name-install.log" 2>&1; then
      ln -sfn "$prefix/npm/node_modules/.bin/$name" "$prefix/bin/$name"
    else
      echo "install.sh: $pkg failed to install (see $prefix/$name-install.log)" >&2
      failed+=("$name"); continue
    fi
  fi
  if have_version "$name"; then
    installed=$((installed + 1))
  else
    echo "install.sh: $name installed but '$name --version' does not say ${VERSION[$name]}" >&2
    failed+=("$name")
  fi
done

echo "install.sh: $installed installed in $prefix/bin${failed[*]:+; failed: ${failed[*]}}"
[[ $installed -gt 0 ]]
