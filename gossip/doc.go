// Package gossip joins a node to swarm's cluster and carries two things over
// it: signed desired states, which the seeder issues and every node spreads,
// and each node's own state (role, torrent address, environment, and per
// app: release, phase, health and progress), which the seeder reads for
// cluster status and agents read to find peers holding the same release.
//
// hashicorp/memberlist does the membership, failure detection and gossip; it
// stays behind small unexported adapters and no memberlist type appears in
// this package's API. A desired state is accepted, persisted and re-gossiped
// only if it verifies against the pinned keyring and its sequence number is
// higher than any the node has accepted for that app; everything else is
// counted in Stats and changes nothing. A newly accepted state spreads three
// ways: the node's broadcast queue (its own, queue.go: memberlist's loses
// messages); a direct send, once, to a few random
// members (a rumour, which does not wait behind membership news the way the
// queue does while a cluster joins); and push/pull anti-entropy, which
// carries every accepted desired state, so a node that joins late or missed
// both catches up.
//
// A node's state travels in two pieces. memberlist's node meta, capped at
// 512 bytes, carries only what is small and fixed for the node's life: role,
// torrent address, environment and the generation of its app states (the
// wall clock at Start). Membership stays memberlist's truth. The per-app
// states, up to MaxApps (32) per node, form a record of the node's own,
// versioned by generation and a sequence that SetApps raises on every
// change. Each change is gossiped as one small message per changed app,
// which every node that finds it new passes on; the node also sends it
// straight to every seeder, after a short random delay that coalesces quick
// changes, so the seeder's rollout controller sees a fleet-wide change in
// one hop rather than through minutes of shared gossip packets. Every
// push/pull carries
// the records of all live members, deflated, which repairs lost messages and
// brings a late joiner up to date. A receiver shows a node's new apps only
// once it holds all of that version (its header counts the apps and digests
// them), so Members never mixes two updates of one node; records are taken
// only in the generation the member's meta names, so a node restarted under
// the same name replaces its old record. Records are not signed yet: any
// member can forge another's (see apps.go).
//
// memberlist never goes back to a node it has declared dead, so a node
// keeps the gossip addresses it has known (members', Join's, and with
// Config.PeersPath those of its last run) and joins again, in the
// background, any that no member is at: a restarted seeder or the two
// sides of a healed partition become one cluster again within seconds, at
// a cost bounded across the cluster (rejoin.go). A node alone says so in
// its log every minute.
//
// Who is a member at all is decided by the gossip keys (Config.SecretKeys,
// Node.SetKeys, KeyFile): with them every packet and stream is encrypted
// and authenticated, nothing in the clear is taken, and a host without a
// key the cluster uses neither joins nor learns anything; keys rotate while
// nodes run. Among members, only one whose meta is signed by a pinned key
// (Config.SigningKey; the signature covers its name, role, torrent address,
// environment and generation) is shown as a seeder; any other claim of the
// role is shown as an agent and counted in Stats.RefusedSeeders.
//
// What one message can make a node do is bounded, and checked before the
// costly work: decompression, decoding and signature checks (wire.go). A
// cluster carries at most MaxDesiredStates (1024) desired states, one per
// (app, environment), each at most MaxDesiredBytes (8 KiB) as JSON; a state
// past either is refused everywhere, by Publish too (ErrTooManyStates,
// ErrStateTooLarge), and since states are never dropped, the bound is on
// the pairs a cluster ever carries. A push/pull has at most
// MaxDesiredStates states checked and at most 8 MiB of them read (more
// refuses it whole before inflating them), 64 MiB inflated in all, and at
// most 65 536 app-state records (one per member) of at most MaxApps apps
// each. A desired-state message is at most MaxDesiredBytes, inflated too.
// Input past a cap is refused unread and counted in Stats (RefusedOverCap,
// AppRefusedOverCap); every refusal is logged at most once a minute per
// cause and source, with a count of those held back (logonce.go).
package gossip
