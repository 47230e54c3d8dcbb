#!/bin/sh
# A hook that always fails: the previous release must stay active.
echo "refusing to install $SWARM_APP $SWARM_VERSION" >&2
exit 3
