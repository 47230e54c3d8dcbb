#!/usr/bin/env bash
# make bench-size: how swarm scales with the release's size, measured with
# every agent its own process (`swarm bench procs`), aria2c beside N=1.
#
#   scripts/bench-size.sh [BIN]
#
# Writes .bench/size/procs.jsonl (one JSON line per run) and
# .bench/size/size.md (the table). Environment:
#   SIZES         sizes to run            (default "32MiB 256MiB 1GiB 2GiB")
#   NODES         uncapped agent counts   (default "1 5 20"; aria2c beside 1)
#   CAPPED_NODES  agent counts also run with CAPS (default "2 5 20"; "" = none)
#   CAPS          the capped setting      (default "--node-up 20MiB --node-down 50MiB --origin-up 50MiB")
#   TIMEOUT       per run                 (default 30m)
#   STALL         per run: no progress for this long fails it (default 2m)
#   BENCH_LOCK    a file to flock around each run, so timings do not share the machine
#   BENCHMARKS_MD also rewrite the <!-- bench:size --> section of this file
#   TMPDIR        scratch disk for the runs
#
# Any run that does not complete (a stall, a timeout, a process that died)
# stops the sweep with a non-zero exit; its results file is renamed
# procs.jsonl.partial so that no table is made from an incomplete sweep.
set -euo pipefail

BIN=${1:-bin/swarm}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/.bench/size}
SIZES=${SIZES:-32MiB 256MiB 1GiB 2GiB}
NODES=${NODES:-1 5 20}
CAPPED_NODES=${CAPPED_NODES-2 5 20}
read -r -a CAPS <<<"${CAPS:---node-up 20MiB --node-down 50MiB --origin-up 50MiB}"
TIMEOUT=${TIMEOUT:-30m}
STALL=${STALL:-2m}
SCRATCH=${TMPDIR:-/tmp}

fail() {
	echo "bench-size: FAILED: $*" >&2
	exit 1
}

[ -x "$BIN" ] || fail "$BIN is not an executable; run make build first"
if ! command -v aria2c >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "== installing aria2 (for the aria2c comparison)"
		apt-get install -y aria2 >/dev/null || fail "apt-get install -y aria2 failed"
	else
		fail "aria2c is not installed; run: sudo apt-get install -y aria2"
	fi
fi

# bytes SIZE: a size such as 256MiB or 2GiB in bytes.
bytes() {
	local s=$1 n=${1%%[!0-9]*}
	case ${s#"$n"} in
	"" | B) echo "$n" ;;
	K | KiB) echo $((n << 10)) ;;
	M | MiB) echo $((n << 20)) ;;
	G | GiB) echo $((n << 30)) ;;
	*) fail "size $s: use a number with KiB, MiB or GiB" ;;
	esac
}

# need N SIZE: the disk one run takes: the payload, the packed bundle and the
# seeder's copy, per agent a bundle and an unpacked release, and aria2c's copy
# (what `swarm bench procs` checks too).
need() { echo $(((3 + 2 * $1 + 1) * $(bytes "$2"))); }
free=$(($(df -Pk "$SCRATCH" | awk 'NR == 2 {print $4}') * 1024))
# A run that cannot fit on the scratch disk is skipped, loudly, and named
# under the table; every other run must complete.
SKIPPED=()
fits() {
	local n=$1 s=$2 label=$3 want
	want=$(need "$n" "$s")
	if [ "$want" -gt "$free" ]; then
		echo "-- N=$n $s SKIPPED: needs about $((want >> 30)) GiB on $SCRATCH, $((free >> 30)) GiB free (set TMPDIR to a bigger disk)" >&2
		SKIPPED+=("N=$n $s $label (needs $((want >> 30)) GiB of disk, $((free >> 30)) free);")
		return 1
	fi
}

mkdir -p "$OUT"
rm -f "$OUT/procs.jsonl" "$OUT/procs.jsonl.partial"
LOCK=()
[ -n "${BENCH_LOCK:-}" ] && LOCK=(flock "$BENCH_LOCK")

# run N SIZE ARGS...: one `swarm bench procs` run; a failure ends the sweep.
run() {
	local n=$1 s=$2
	shift 2
	echo "-- N=$n $s $*"
	if ! "${LOCK[@]}" "$BIN" bench procs --nodes "$n" --size "$s" "$@" \
		--timeout "$TIMEOUT" --stall-timeout "$STALL" --json --out "$OUT/procs.jsonl" >/dev/null; then
		local kept=""
		if [ -f "$OUT/procs.jsonl" ]; then
			mv "$OUT/procs.jsonl" "$OUT/procs.jsonl.partial"
			kept="; the runs before it are in $OUT/procs.jsonl.partial"
		fi
		fail "N=$n size $s $* did not complete (see the error above); no table written$kept"
	fi
}

echo "== size sweep: $(nproc) cores, $(date -u +%F), sizes $SIZES, N $NODES (capped: ${CAPPED_NODES:-none}), results in $OUT"
for s in $SIZES; do
	for n in $NODES; do
		aria=()
		[ "$n" = 1 ] && aria=(--aria2c)
		fits "$n" "$s" uncapped && run "$n" "$s" "${aria[@]}"
	done
	for n in $CAPPED_NODES; do
		fits "$n" "$s" capped && run "$n" "$s" "${CAPS[@]}"
	done
done

MD=()
[ -n "${BENCHMARKS_MD:-}" ] && MD=(--markdown "$BENCHMARKS_MD" --command "make bench-size (scripts/bench-size.sh)")
{
	echo "_$(nproc) cores, $(date -u +%F), \`make bench-size\`: every agent its own process; wall s is publish to the last agent active; origin ÷ F is the seeder's BitTorrent payload ÷ the bundle; host-bound = the machine's cores were over 85% busy, so the figures are the host's, not the protocol's._"
	echo
	"$BIN" bench report --procs "$OUT/procs.jsonl" "${MD[@]}"
	if [ ${#SKIPPED[@]} -gt 0 ]; then
		echo
		echo "Skipped for lack of disk: ${SKIPPED[*]}"
	fi
} >"$OUT/size.md"
cat "$OUT/size.md"
echo "== $OUT/size.md written"
