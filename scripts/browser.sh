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

# shellcheck source=scripts/npm-cache.sh
source "$(pwd)/scripts/npm-cache.sh"

browser_src="$(pwd)/host/server/tests/browser"
browser_dir="$HOME/.cache/airlock/browser"
browser_chromium=/usr/bin/chromium

browser_prepare() {
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
  # playwright-core has no install script and downloads no browser of its own
  # (npm_ci_cached sets PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD all the same).
  npm_ci_cached "$browser_src" "$browser_dir" browser
}

unset AIRLOCK_BROWSER_DIR AIRLOCK_CHROMIUM
if browser_prepare; then
  export AIRLOCK_BROWSER_DIR="$browser_dir"
  export AIRLOCK_CHROMIUM="$browser_chromium"
  echo "browser: ready ($AIRLOCK_CHROMIUM, node_modules in $AIRLOCK_BROWSER_DIR)" >&2
else
  echo "browser: not prepared, the console's browser tests will skip (or fail under CI=true)" >&2
fi
