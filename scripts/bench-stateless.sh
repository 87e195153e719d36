#!/usr/bin/env bash
# The stateless proxy against Kamailio at 500 and 5,000 calls/s: see scripts/bench-proxy.sh.
exec "$(dirname "$0")/bench-proxy.sh" stateless "$@"
