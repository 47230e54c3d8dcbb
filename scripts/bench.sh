#!/usr/bin/env bash
# make bench / make bench-full: run a sweep with `swarm bench`, then rewrite the
# matching tables of BENCHMARKS.md and the plots in docs/bench/.
#
#   scripts/bench.sh BIN quick   a few minutes: small real and simulated sweeps
#   scripts/bench.sh BIN full    the sweeps BENCHMARKS.md reports (about an hour)
#
# FEEDERS sets the origin policy (--origin-feeders): -1 (default) the kept
# policy with an automatic feeder count, 0 every node on the origin (naive).
# CENTRAL=false skips the central baseline (it does not depend on the policy).
# SECTIONS=naive- writes the tables to other BENCHMARKS.md sections.
# NET=no skips the network-bound real sweep; ONLY=net runs it alone.
set -euo pipefail

BIN=${1:-bin/swarm}
PROFILE=${2:-quick}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/.bench/$PROFILE}
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl

case "$PROFILE" in
quick)
	REAL_NODES="10 25"; REAL_SIZE=16MiB; ORIGIN_UP=20MiB
	VALIDATE_NODES="10 25"; VALIDATE_SIZE=8MiB
	SIM_NODES="100 500 1000 5000"; SIM_SIZE=1GiB
	GOSSIP_NODES="100 250"
	NET_NODES="10"; NET_SIZE=8MiB
	;;
full)
	REAL_NODES="25 50 100 200"; REAL_SIZE=64MiB; ORIGIN_UP=50MiB
	VALIDATE_NODES="25 50 100 200"; VALIDATE_SIZE=32MiB
	SIM_NODES="100 500 1000 5000 20000"; SIM_SIZE=1GiB
	GOSSIP_NODES="500 1000 2000"
	NET_NODES="25 50 100 200"; NET_SIZE=16MiB
	# 2000 nodes started at once saturate two cores with join traffic; a
	# fleet boots over minutes anyway.
	GOSSIP_JOIN_RATE_2000=8
	;;
*)
	echo "usage: $0 BIN quick|full" >&2
	exit 2
	;;
esac
FEEDERS=${FEEDERS:--1}
# GOSSIP=no skips the gossip runs (they do not depend on the transfer policy).
[ "${GOSSIP:-yes}" = no ] && GOSSIP_NODES=""
# ONLY=net runs the network-bound sweep alone (and rewrites only its table).
if [ "${ONLY:-}" = net ]; then
	REAL_NODES="" VALIDATE_NODES="" SIM_NODES="" GOSSIP_NODES=""
elif [ -n "${ONLY:-}" ]; then
	echo "ONLY=$ONLY: only ONLY=net is known" >&2
	exit 2
fi
SECTIONS=${SECTIONS:-$PROFILE-}
PLOTS=$ROOT/docs/bench/${SECTIONS%-}
# --max-conns 20 keeps 200 agents in one process under 20 000 descriptors.
REAL_CAPS=(--node-up 2MiB --node-down 20MiB --origin-up "$ORIGIN_UP" --max-conns 20 --origin-feeders "$FEEDERS")
# The validation sweep uses caps low enough that one 2-core machine is not the
# bottleneck at 200 agents (the simulator models the network, not the host).
VALIDATE_CAPS=(--node-up 256KiB --node-down 2MiB --origin-up 8MiB --max-conns 20 --origin-feeders "$FEEDERS")
# The network-bound sweep: caps low enough that 200 agents keep the host
# under the 85 % line (host_bound says whether they did), so completion and
# origin egress measure the protocol, not this machine.
NET_CAPS=(--node-up 128KiB --node-down 1MiB --origin-up 4MiB --max-conns 20 --origin-feeders "$FEEDERS")
SIM_CAPS=(--node-up 1Gbit --node-down 1Gbit --origin-up 10Gbit --origin-feeders "$FEEDERS")

echo "== $PROFILE sweep: $(nproc) cores, $(date -u +%F), results in $OUT"
for n in $REAL_NODES; do
	echo "-- real N=$n ($REAL_SIZE, ${REAL_CAPS[*]})"
	"$BIN" bench real --nodes "$n" --size "$REAL_SIZE" "${REAL_CAPS[@]}" --central="${CENTRAL:-true}" --out "$OUT/real.jsonl" >/dev/null
done
for n in $VALIDATE_NODES; do
	echo "-- validation N=$n: real and sim ($VALIDATE_SIZE, ${VALIDATE_CAPS[*]})"
	"$BIN" bench real --nodes "$n" --size "$VALIDATE_SIZE" "${VALIDATE_CAPS[@]}" --central=false --out "$OUT/validate-real.jsonl" >/dev/null
	"$BIN" bench sim --nodes "$n" --size "$VALIDATE_SIZE" "${VALIDATE_CAPS[@]}" --out "$OUT/validate.jsonl" >/dev/null
done
[ "${NET:-yes}" = no ] && NET_NODES=""
for n in $NET_NODES; do
	echo "-- network-bound N=$n ($NET_SIZE, ${NET_CAPS[*]})"
	"$BIN" bench real --nodes "$n" --size "$NET_SIZE" "${NET_CAPS[@]}" --central=false --out "$OUT/net.jsonl" >/dev/null
done
for n in $SIM_NODES; do
	echo "-- sim N=$n ($SIM_SIZE, ${SIM_CAPS[*]})"
	"$BIN" bench sim --nodes "$n" --size "$SIM_SIZE" "${SIM_CAPS[@]}" --out "$OUT/sim.jsonl" >/dev/null
done
for n in $GOSSIP_NODES; do
	echo "-- gossip N=$n"
	rate=0
	if [ "$n" -ge 2000 ]; then rate=${GOSSIP_JOIN_RATE_2000:-0}; fi
	"$BIN" bench gossip --nodes "$n" --join-rate "$rate" --json >>"$OUT/gossip.jsonl"
done
GOSSIP_ARGS=()
[ -s "$OUT/gossip.jsonl" ] && GOSSIP_ARGS=(--gossip "$OUT/gossip.jsonl")
[ "${ONLY:-}" = net ] || "$BIN" bench report --real "$OUT/real.jsonl" --sim "$OUT/sim.jsonl" --validate "$OUT/validate.jsonl" \
	--validate-real "$OUT/validate-real.jsonl" \
	"${GOSSIP_ARGS[@]}" --plots "$PLOTS" --csv "$OUT/results.csv" \
	--markdown "$ROOT/BENCHMARKS.md" --section-prefix "$SECTIONS" \
	--command "$([ "$FEEDERS" = -1 ] || echo "FEEDERS=$FEEDERS ")make bench$([ "$PROFILE" = full ] && echo -full) (scripts/bench.sh $PROFILE)"
if [ -s "$OUT/net.jsonl" ]; then
	"$BIN" bench report --real "$OUT/net.jsonl" --markdown "$ROOT/BENCHMARKS.md" --section-prefix "${SECTIONS}net-" \
		--command "${ONLY:+ONLY=$ONLY }make bench$([ "$PROFILE" = full ] && echo -full) (scripts/bench.sh $PROFILE), network-bound: $NET_SIZE, ${NET_CAPS[*]}"
fi
echo "== BENCHMARKS.md (${SECTIONS}* sections) and $PLOTS/*.png updated"
