#!/usr/bin/env bash
# The stateful proxy against Kamailio at 500 and 5,000 calls/s: see scripts/bench-proxy.sh.
exec "$(dirname "$0")/bench-proxy.sh" stateful "$@"
