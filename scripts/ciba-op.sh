#!/usr/bin/env bash
# Prepares the CIBA test peer: the certified `oidc-provider` OP of ../shared/ciba-op.
# Usage (from the repository root): source scripts/ciba-op.sh   (exports AIRLOCK_CIBA_OP_DIR)
#
# ../shared is read-only, so package.json, package-lock.json and op.mjs are copied to
# ~/.cache/airlock/ciba-op and `npm ci` runs there, once per lock file: a later run whose
# node_modules is present and whose lock is unchanged skips it.
# The Rust tests start `node op.mjs` from AIRLOCK_CIBA_OP_DIR; without it they skip
# (or fail under CI=true).
set -euo pipefail

ciba_src="${AIRLOCK_CIBA_OP_SRC:-$(pwd)/../shared/ciba-op}"
ciba_dir="$HOME/.cache/airlock/ciba-op"

ciba_prepare() {
  if [ ! -f "$ciba_src/op.mjs" ]; then
    echo "ciba-op: no CIBA peer at $ciba_src (expected ../shared beside the repository)" >&2
    return 1
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ciba-op: installing nodejs and npm (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >&2 || return 1
  fi
  mkdir -p "$ciba_dir" || return 1
  local f
  for f in package.json package-lock.json op.mjs; do
    cmp -s "$ciba_src/$f" "$ciba_dir/$f" || install -m 644 "$ciba_src/$f" "$ciba_dir/$f" || return 1
  done
  local stamp="$ciba_dir/.installed-lock"
  if [ -d "$ciba_dir/node_modules" ] && cmp -s "$ciba_dir/package-lock.json" "$stamp"; then
    return 0
  fi
  echo "ciba-op: npm ci in $ciba_dir" >&2
  (cd "$ciba_dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || return 1
  cp "$ciba_dir/package-lock.json" "$stamp"
}

# A failure leaves AIRLOCK_CIBA_OP_DIR unset: the CIBA tests then skip, or fail under CI.
if ciba_prepare; then
  export AIRLOCK_CIBA_OP_DIR="$ciba_dir"
  echo "ciba-op: ready in $AIRLOCK_CIBA_OP_DIR" >&2
else
  echo "ciba-op: not prepared, the CIBA client tests will skip (or fail under CI=true)" >&2
fi
