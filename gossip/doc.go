// Package gossip joins a node to swarm's cluster and carries two things over
// it: signed desired states, which the seeder issues and every node spreads,
// and each node's own state (role, torrent address, per-app release, phase,
// health and progress), which the seeder reads for cluster status and agents
// read to find peers holding the same release.
//
// hashicorp/memberlist does the membership, failure detection and gossip; it
// stays behind small unexported adapters and no memberlist type appears in
// this package's API. A desired state is accepted, persisted and re-gossiped
// only if it verifies against the pinned keyring and its sequence number is
// higher than any the node has accepted for that app; everything else is
// counted in Stats and changes nothing. A newly accepted state spreads three
// ways: memberlist's broadcast queue; a direct send, once, to a few random
// members (a rumour, which does not wait behind membership news the way the
// queue does while a cluster joins); and push/pull anti-entropy, which
// carries every accepted desired state, so a node that joins late or missed
// both catches up.
package gossip
