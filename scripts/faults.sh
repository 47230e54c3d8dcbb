#!/usr/bin/env bash
# make test-faults: the fault suite with real processes (FAULTS.md). Every
# scenario runs the seeder and agents as separate processes, each in a
# network namespace of its own with a tc rate cap, injects one fault into a
# rollout and checks the outcome; one line per scenario; exit non-zero if
# any failed. Needs root; installs iproute2 from Debian's packages when ip
# or tc is missing. Extra arguments go to `swarm bench faults`, e.g.
#   bash scripts/faults.sh bin/swarm --scenario partition --nodes 6
set -euo pipefail

BIN=${1:-bin/swarm}
shift || true

if [ "$(id -u)" != 0 ]; then
	echo "faults: the fault suite needs root (network namespaces, tc, tmpfs mounts): run 'sudo make test-faults'" >&2
	exit 2
fi
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
	if ! command -v apt-get >/dev/null; then
		echo "faults: ip and tc are missing and there is no apt-get: install iproute2" >&2
		exit 2
	fi
	echo "faults: installing iproute2 (ip, tc)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi
if [ ! -x "$BIN" ]; then
	echo "faults: no $BIN: run 'make build' first" >&2
	exit 2
fi
exec "$BIN" bench faults "$@"
