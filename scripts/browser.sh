#!/usr/bin/env bash
# Prepares the console's browser tests: Debian's Chromium and the npm packages playwright-core
# (drives it) and axe-core (accessibility checks) of host/server/tests/browser.
# Usage (from the repository root): source scripts/browser.sh
#   (exports AIRLOCK_CHROMIUM, the browser, and AIRLOCK_BROWSER_DIR, whose node_modules the
#   scripts import from)
#
# Installs the `chromium` package with apt-get when /usr/bin/chromium is missing (and nodejs/npm
# when node is). package.json and package-lock.json are copied to ~/.cache/airlock/browser and
# `npm ci` runs there, once per lock file: a later run whose node_modules is present and whose lock
# is unchanged skips it. playwright-core downloads no browser of its own.
# A failure leaves both variables unset and says why: the browser tests then skip (or fail under
# CI=true). Sourced by scripts/test; it does not change the caller's shell options.

browser_src="$(pwd)/host/server/tests/browser"
browser_dir="$HOME/.cache/airlock/browser"
browser_chromium=/usr/bin/chromium

browser_prepare() {
  if [ ! -f "$browser_src/package-lock.json" ]; then
    echo "browser: no $browser_src/package-lock.json (source this from the repository root)" >&2
    return 1
  fi
  if [ ! -x "$browser_chromium" ]; then
    echo "browser: installing chromium (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 || {
      echo "browser: apt-get install chromium failed" >&2
      return 1
    }
    if [ ! -x "$browser_chromium" ]; then
      echo "browser: chromium installed but $browser_chromium is missing" >&2
      return 1
    fi
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "browser: installing nodejs and npm (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >&2 || {
      echo "browser: apt-get install nodejs npm failed" >&2
      return 1
    }
  fi
  mkdir -p "$browser_dir" || return 1
  local f
  for f in package.json package-lock.json; do
    cmp -s "$browser_src/$f" "$browser_dir/$f" || install -m 644 "$browser_src/$f" "$browser_dir/$f" || return 1
  done
  local stamp="$browser_dir/.installed-lock"
  if [ -d "$browser_dir/node_modules" ] && cmp -s "$browser_dir/package-lock.json" "$stamp"; then
    return 0
  fi
  echo "browser: npm ci in $browser_dir" >&2
  # playwright-core has no install script; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD guards against any
  # browser download all the same (this network reaches only the package registries).
  (cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) >&2 || {
    echo "browser: npm ci failed in $browser_dir" >&2
    return 1
  }
  cp "$browser_dir/package-lock.json" "$stamp"
}

unset AIRLOCK_BROWSER_DIR AIRLOCK_CHROMIUM
if browser_prepare; then
  export AIRLOCK_BROWSER_DIR="$browser_dir"
  export AIRLOCK_CHROMIUM="$browser_chromium"
  echo "browser: ready ($AIRLOCK_CHROMIUM, node_modules in $AIRLOCK_BROWSER_DIR)" >&2
else
  echo "browser: not prepared, the console's browser tests will skip (or fail under CI=true)" >&2
fi
