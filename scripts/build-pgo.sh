#!/usr/bin/env bash
# Builds the deployable binary (dist profile) with profile-guided optimization:
#   1. an instrumented build writes execution counts while it runs;
#   2. it proxies a training load: SIPp calls through examples/stateful.cfg (tm, rr,
#      failure routes, sanity, xlog) and examples/stateless.cfg, over UDP;
#   3. the counts are merged and the binary is built again with them, so LLVM lays out
#      and inlines the code for the paths a proxy actually runs.
# The training uses this repository's own configs and scenarios only.
#
# Needs: SIPp (sip-tester) and llvm-profdata of the Rust toolchain's LLVM
# (`rustup component add llvm-tools`). Output: target/pgo/dist/ferrosip (or under
# $CARGO_TARGET_DIR/pgo when it is set).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}/pgo
# A fixed directory for the raw counts: the instrumented build's flags stay the same from
# one run to the next, so cargo reuses that build.
work=$target/training
rm -rf "$work"
mkdir -p "$work"
uas_pid=""
trap 'pkill -P $$ 2>/dev/null || true; [[ -z $uas_pid ]] || kill "$uas_pid" 2>/dev/null || true' EXIT

command -v sipp >/dev/null || { echo "build-pgo: sipp not found (apt-get install sip-tester)" >&2; exit 1; }
sysroot=$(rustc --print sysroot)
profdata=$(find "$sysroot" -name llvm-profdata -type f | head -n 1)
if [[ -z $profdata ]]; then
	rustup component add llvm-tools >&2
	profdata=$(find "$sysroot" -name llvm-profdata -type f | head -n 1)
fi
[[ -x $profdata ]] || { echo "build-pgo: llvm-profdata not found" >&2; exit 1; }

echo "build-pgo: instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$work/raw" CARGO_TARGET_DIR="$target/instrumented" \
	cargo build --profile dist --bin ferrosip --manifest-path "$root/Cargo.toml"
bin="$target/instrumented/dist/ferrosip"
# Build scripts and proc macros of that build were instrumented too and left counts of
# their own: only the training's count.
rm -rf "$work/raw"

uas() { # port: the stateful tests' callee (echoes Record-Route, answers after 300 ms)
	sipp -sf "$root/tests/tests/scenarios/stateful/uas_answer.xml" -key uas_id pgo \
		-nostdin -i 127.0.0.1 -p "$1" >/dev/null 2>&1 &
	uas_pid=$!
	sleep 0.3
	kill -0 "$uas_pid" 2>/dev/null || { echo "build-pgo: the SIPp UAS did not start" >&2; exit 1; }
}
calls() { # rate count
	sipp -sf "$root/scripts/bench/uac_call.xml" -nostdin -i 127.0.0.1 -p 5061 \
		-rsa 127.0.0.1:5060 127.0.0.1:5070 -r "$1" -m "$2" -l 20000 \
		-recv_timeout 10000 >/dev/null 2>&1 || true
}
train() { # config, then -A defines
	local cfg=$1
	shift
	"$bin" run -f "$cfg" "$@" >"$work/proxy.log" 2>&1 &
	local pid=$!
	sleep 1
	calls 200 400
	calls 2000 20000
	if ! kill -INT "$pid" 2>/dev/null; then
		echo "build-pgo: the proxy on $cfg stopped early:" >&2
		tail -n 20 "$work/proxy.log" >&2
		exit 1
	fi
	wait "$pid" || true
}

echo "build-pgo: training" >&2
uas 5070
train "$root/examples/stateful.cfg" -A PROXY_PORT=5060 -A 'UAS1="sip:127.0.0.1:5070"'
train "$root/examples/stateless.cfg"
kill "$uas_pid" 2>/dev/null || true
uas_pid=""

"$profdata" merge -o "$work/merged.profdata" "$work/raw"
echo "build-pgo: optimized build" >&2
RUSTFLAGS="-Cprofile-use=$work/merged.profdata" \
	CARGO_TARGET_DIR="$target" \
	cargo build --profile dist --bin ferrosip --manifest-path "$root/Cargo.toml"
echo "$target/dist/ferrosip"
