#!/bin/sh
# Sample install hook: swarm runs it as `install.sh install` in the new
# release's directory before switching `current` to it. A non-zero exit keeps
# the previous release active. Everything it prints lands in the hook log.
set -eu
echo "installing $SWARM_APP $SWARM_VERSION ($SWARM_RELEASE_ID)"
echo "  into     $SWARM_RELEASE_DIR"
echo "  previous ${SWARM_PREVIOUS_DIR:-none}"
# A real hook would render config, run migrations, warm caches. This one
# checks the release looks runnable.
test -x "$SWARM_RELEASE_DIR/bin/hello"
"$SWARM_RELEASE_DIR/bin/hello"
