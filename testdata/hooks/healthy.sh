#!/bin/sh
# Sample health check: runs after the switch; non-zero restores the previous release.
exec "$SWARM_RELEASE_DIR/bin/hello" >/dev/null
