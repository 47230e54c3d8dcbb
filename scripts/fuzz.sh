#!/usr/bin/env bash
# make fuzz: run every Go fuzz target in the module, one at a time, for
# FUZZTIME each (default 30s). Targets are discovered with
# `go test -list '^Fuzz'`, so a new FuzzXxx anywhere is picked up without
# touching this file. Stops at the first target that fails and says how to
# reproduce it.
#
#   FUZZTIME=10s scripts/fuzz.sh            every target, 10 s each
#   FUZZ=Manifest scripts/fuzz.sh ./release  targets matching a regexp, in ./release
#   FUZZPARALLEL=1                          one fuzzing worker (default: GOMAXPROCS)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
PKGS=("$@")
[ ${#PKGS[@]} -gt 0 ] || PKGS=(./...)
PARALLEL=()
[ -z "${FUZZPARALLEL:-}" ] || PARALLEL=(-parallel "$FUZZPARALLEL")

# Temporary files, the fuzz targets' included, go to tmpfs when there is
# one: targets that write files (FuzzUnpack, the state loaders) fsync, and a
# busy disk holds them to a few inputs a second.
scratch=
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	scratch=$(mktemp -d /dev/shm/swarm-fuzz.XXXXXX)
	export TMPDIR=$scratch
fi
list=$(mktemp)
out=$(mktemp)
trap 'rm -rf "$list" "$out" $scratch' EXIT

# `go test -list` prints a package's matching names, then "ok <pkg> <time>".
if ! "$GO" test -list '^Fuzz' "${PKGS[@]}" >"$list" 2>&1; then
	cat "$list"
	echo "fuzz: listing the fuzz targets failed" >&2
	exit 1
fi
targets=()
names=()
while read -r first second _; do
	case $first in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do targets+=("$second $n"); done
		names=()
		;;
	esac
done <"$list"

# boundary_flake NAME OUT: the run in OUT failed only because the fuzztime
# deadline fired: its one failure line is "context deadline exceeded" and it
# wrote no failing input.
boundary_flake() {
	local name=$1 out=$2
	grep -q 'Failing input written to' "$out" && return 1
	grep -Eq '^(panic:|fatal error:|\s+[a-z_]+\.go:[0-9]+:)' "$out" && return 1
	grep -A1 -- "^--- FAIL: $name " "$out" | tail -n 1 | grep -Eq '^\s+context deadline exceeded$'
}

selected=()
for t in "${targets[@]}"; do
	if [[ ${t#* } =~ $FUZZ ]]; then selected+=("$t"); fi
done
if [ ${#selected[@]} -eq 0 ]; then
	echo "fuzz: no fuzz target matches '$FUZZ' in ${PKGS[*]}" >&2
	exit 1
fi
echo "fuzz: ${#selected[@]} targets, $FUZZTIME each"

for t in "${selected[@]}"; do
	pkg=${t% *} name=${t#* }
	start=$SECONDS
	echo "== $name ($pkg)"
	if "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "${PARALLEL[@]}" "$pkg" >"$out" 2>&1; then
		echo "   ok in $((SECONDS - start))s: $(grep -Eo 'execs: [0-9]+' "$out" | tail -n 1 || true)"
		continue
	fi
	# Go's fuzzing coordinator can fail a target that found nothing: when a
	# duration -fuzztime runs out while a worker is mid-call on a loaded
	# machine it reports a bare "context deadline exceeded" (golang/go#75804,
	# still in go1.26). Such a run wrote no input and printed nothing else.
	# Run the same number of executions again as a count, which has no
	# deadline to race; a real finding fails that run too.
	if boundary_flake "$name" "$out"; then
		execs=$(grep -Eo 'execs: [0-9]+' "$out" | tail -n 1 | grep -Eo '[0-9]+' || true)
		[ -n "$execs" ] && [ "$execs" -gt 0 ] || execs=10000
		echo "   the fuzztime deadline cut a worker short (Go's coordinator race, no input written); again as ${execs} executions"
		if "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "${execs}x" "${PARALLEL[@]}" "$pkg" >"$out" 2>&1; then
			echo "   ok in $((SECONDS - start))s: $(grep -Eo 'execs: [0-9]+' "$out" | tail -n 1 || true)"
			continue
		fi
	fi
	cat "$out"
	dir=$("$GO" list -f '{{.Dir}}' "$pkg")
	file=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$out" | tail -n 1)
	echo
	echo "fuzz: $name in $pkg failed after $((SECONDS - start))s."
	if [ -n "$file" ]; then
		echo "The input is $dir/$file. Reproduce with:"
		echo "   $GO test -run '^$name/$(basename "$file")\$' $pkg"
		echo "Commit it with the fix: it then runs with every 'go test'."
	else
		echo "No input was saved (a build failure or a failing seed?). Reproduce with:"
		echo "   $GO test -run '^$name\$' $pkg"
	fi
	exit 1
done
echo "fuzz: every target ran $FUZZTIME without a failure"
