// Package agent is the node daemon. It joins the gossip cluster, follows the
// desired state of every app, downloads each target release from its peers
// and the origin through package swarm, installs it through package
// installer when its wave is admitted, and gossips what it is doing. Its
// per-app state is persisted in its data dir, so a restart neither downloads
// nor installs again what it already has.
package agent
