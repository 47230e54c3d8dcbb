#!/usr/bin/env bash
# make demo: one seeder and several agents on 127.0.0.1 under a temporary
# directory; publish the sample app v1, watch every agent go active, publish
# v2 as a canary rollout wave by wave, then a broken v3 that the controller
# rolls back by itself; then stop everything and remove what was made.
set -euo pipefail

BIN=${1:-bin/swarm}
AGENTS=${SWARM_DEMO_AGENTS:-6}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d -t swarm-demo.XXXXXX)
PIDS=()

cleanup() {
	local rc=$?
	echo
	echo "== stopping ${#PIDS[@]} processes and removing $DIR"
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ $rc -ne 0 ]; then
		echo "== demo failed (exit $rc); last seeder log lines:"
		tail -n 20 "$DIR/logs/seeder.log" 2>/dev/null || true
	fi
	rm -rf "$DIR"
	exit $rc
}
trap cleanup EXIT INT TERM

# wait_file FILE: wait up to 20 s for a daemon's --addr-file.
wait_file() {
	for _ in $(seq 1 200); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	echo "timed out waiting for $1" >&2
	return 1
}
addr() { grep "^$2=" "$1" | cut -d= -f2-; }

mkdir -p "$DIR/logs"
echo "== workspace $DIR"
"$BIN" keygen --role release --out "$DIR/keys" # signs manifests: swarm publish
"$BIN" keygen --role rollout --out "$DIR/keys" # the seeder's: signs desired states
# The seeder's API needs a bearer token; every command below reads it from
# SWARM_API_TOKEN (or would take --api-token-file "$DIR/keys/api-token").
"$BIN" api-token generate --out "$DIR/keys/api-token"
SWARM_API_TOKEN=$(cat "$DIR/keys/api-token")
export SWARM_API_TOKEN
# Every process encrypts its gossip with this key (mode 0600).
"$BIN" gossip-key generate --out "$DIR/keys/gossip.key"

"$BIN" seeder --store "$DIR/store" --key "$DIR/keys/rollout.key" \
	--trust-release "$DIR/keys/release.pub" --name seeder \
	--api-token-file "$DIR/keys/api-token" --gossip-key-file "$DIR/keys/gossip.key" \
	--gossip 127.0.0.1:0 --torrent 127.0.0.1:0 --api 127.0.0.1:0 \
	--addr-file "$DIR/seeder.addrs" 2>"$DIR/logs/seeder.log" &
PIDS+=($!)
wait_file "$DIR/seeder.addrs"
API=$(addr "$DIR/seeder.addrs" api)
GOSSIP=$(addr "$DIR/seeder.addrs" gossip)
echo "== seeder up: api $API, gossip $GOSSIP"

for i in $(seq 1 "$AGENTS"); do
	"$BIN" agent --data "$DIR/agent-$i" --name "agent-$i" --join "$GOSSIP" \
		--trust-release "$DIR/keys/release.pub" --trust-rollout "$DIR/keys/rollout.pub" \
		--gossip-key-file "$DIR/keys/gossip.key" \
		--hook "$ROOT/testdata/hooks/install.sh" \
		--health-check "$ROOT/testdata/hooks/healthy.sh" \
		--gossip 127.0.0.1:0 --torrent 127.0.0.1:0 \
		--addr-file "$DIR/agent-$i.addrs" 2>"$DIR/logs/agent-$i.log" &
	PIDS+=($!)
done
for i in $(seq 1 "$AGENTS"); do wait_file "$DIR/agent-$i.addrs"; done
echo "== $AGENTS agents up"

pub() { "$BIN" publish "$ROOT/testdata/apps/hello/v$1" --app hello --version "$1.0.0" \
	--key "$DIR/keys/release.key" --seeder "$API" --wait --wait-timeout 3m "${@:2}"; }

echo
echo "== publish hello v1.0.0 to every agent at once"
pub 1
echo
echo "== agent-1 runs: $("$DIR/agent-1/releases/hello/current/bin/hello" | head -n 1)"

echo
echo "== publish hello v2.0.0 as a canary rollout: 1 node, then 50%, then all; each wave bakes 3s"
pub 2 --plan 1,50%,100% --bake 3s
echo
"$BIN" rollout status hello --seeder "$API"
echo
echo "== agent-1 runs: $("$DIR/agent-1/releases/hello/current/bin/hello" | head -n 1)"

echo
echo "== publish hello v3.0.0, a broken build: its health check fails on the canary,"
echo "   the controller rolls every node back to v2.0.0 and marks v3.0.0 bad"
if pub 3 --plan 1,50%,100% --bake 3s; then
	echo "v3.0.0 was not rolled back" >&2
	exit 1
fi
echo
"$BIN" rollout status hello --seeder "$API"
echo
"$BIN" status --seeder "$API" --wait --min-nodes "$AGENTS" --interval 1s --timeout 1m
echo
echo "== demo finished: every agent active on v2.0.0; v3.0.0 rolled back from its canary"
