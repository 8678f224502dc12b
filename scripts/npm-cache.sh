#!/usr/bin/env bash
# npm_ci_cached SRC DIR LABEL: copies SRC's package.json and package-lock.json to DIR and runs
# `npm ci` there, once per lock file (a later call whose node_modules is present and whose lock
# is unchanged does nothing). Installs nodejs and npm with apt-get when node is missing.
# Messages start with LABEL; returns non-zero, saying why, on failure.
# Sourced by scripts/browser.sh and scripts/node-peers.sh.

npm_ci_cached() {
  local src="$1" dir="$2" label="$3"
  if [ ! -f "$src/package-lock.json" ]; then
    echo "$label: no $src/package-lock.json (source this from the repository root)" >&2
    return 1
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "$label: installing nodejs and npm (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >&2 || {
      echo "$label: apt-get install nodejs npm failed" >&2
      return 1
    }
  fi
  mkdir -p "$dir" || return 1
  local f
  for f in package.json package-lock.json; do
    cmp -s "$src/$f" "$dir/$f" || install -m 644 "$src/$f" "$dir/$f" || return 1
  done
  local stamp="$dir/.installed-lock"
  if [ -d "$dir/node_modules" ] && cmp -s "$dir/package-lock.json" "$stamp"; then
    return 0
  fi
  echo "$label: npm ci in $dir" >&2
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) >&2 || {
    echo "$label: npm ci failed in $dir" >&2
    return 1
  }
  cp "$dir/package-lock.json" "$stamp"
}
