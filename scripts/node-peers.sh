#!/usr/bin/env bash
# Prepares the Node.js test peers of host/server/tests/peers/node: the official TypeScript MCP
# SDK (@modelcontextprotocol/sdk) as an agent and the official OpenFGA JavaScript SDK
# (@openfga/sdk) against Airlock's OpenFGA API, `npm ci`'d once per lock into
# ~/.cache/airlock/node-peers.
# Usage (from the repository root): source scripts/node-peers.sh (exports AIRLOCK_NODE_PEERS,
# whose node_modules the peers import from). A failure leaves it unset and says why: those tests
# then skip (or fail under CI=true). Sourced by scripts/test; it does not change shell options.

# shellcheck source=scripts/npm-cache.sh
source "$(pwd)/scripts/npm-cache.sh"

unset AIRLOCK_NODE_PEERS
if npm_ci_cached "$(pwd)/host/server/tests/peers/node" "$HOME/.cache/airlock/node-peers" node-peers; then
  export AIRLOCK_NODE_PEERS="$HOME/.cache/airlock/node-peers"
  echo "node-peers: ready (node_modules in $AIRLOCK_NODE_PEERS)" >&2
else
  echo "node-peers: not prepared, the Node.js peer tests will skip (or fail under CI=true)" >&2
fi
