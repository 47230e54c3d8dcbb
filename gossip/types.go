package gossip

import (
	"errors"

	"github.com/swarmdeploy/swarm/release"
)

// Role says what a member does in the cluster.
type Role string

// Roles a node can gossip.
const (
	RoleSeeder Role = "seeder"
	RoleAgent  Role = "agent"
)

// Phase is where an app on a node stands in a rollout.
type Phase string

// Phases a node can gossip for an app.
const (
	PhaseDownloading Phase = "downloading"
	PhaseStaged      Phase = "staged"
	PhaseInstalling  Phase = "installing"
	PhaseActive      Phase = "active"
	PhaseFailed      Phase = "failed"
	PhaseRolledBack  Phase = "rolled-back"
)

// AppState is one app on one node, as gossiped.
type AppState struct {
	App string
	// Version of the release this phase is about.
	Version string
	// ReleaseID is the release this phase is about: the target being
	// downloaded or installed, or the active one.
	ReleaseID release.ID
	Phase     Phase
	Healthy   bool
	// Progress is the download progress in [0,1]; it travels in steps of 0.001.
	Progress float64
	// Rate is the download rate in bytes/s while downloading; it travels in
	// KiB/s.
	Rate int64
	// Error is a short reason when the phase is failed. It travels cut to
	// its first 200 bytes.
	Error string
	// Stale: the node's desired state for the app has expired (its seeder
	// has not re-signed it in time). The node keeps running its release and
	// takes no new target until a fresh state arrives.
	Stale bool
}

// NodeState is what a node tells the cluster about itself.
type NodeState struct {
	Name        string
	Addr        string // gossip address, host:port
	Role        Role
	TorrentAddr string
	// Env is the node's environment; release.DefaultEnv when it names none.
	Env string
	// Apps is the node's last complete app-state record this node has
	// heard, sorted by app name: never a mix of two of the node's updates.
	Apps []AppState
}

// Stats counts what happened to the desired states and app-state records
// this node has seen, so an operator can tell a quiet cluster from one that
// refuses what it is sent.
type Stats struct {
	Accepted         uint64 // newer, verified states taken and re-gossiped
	Duplicates       uint64 // states with the sequence already held
	RefusedUntrusted uint64 // signed by a key (or carrying a manifest signed by a key) not in the keyring
	RefusedStale     uint64 // verified but older than the state held
	RefusedInvalid   uint64 // bad signature, non-canonical payload, invalid fields, too few release signatures, a sequence over release.MaxSequenceJump ahead, or undecodable message
	// RefusedOverCap counts desired states refused unread, their signatures
	// unchecked, for a cap: past MaxDesiredStates in one push/pull, over
	// MaxDesiredBytes, in a push/pull whose desired states are over their
	// byte bound or that inflates past its own (each such push/pull counts
	// one), or for a new (app, environment) once MaxDesiredStates are held.
	RefusedOverCap uint64
	// Verifications counts the desired states whose signatures this node
	// checked (each up to three ed25519 verifications: the state and its
	// manifests): the costly work the caps bound.
	Verifications uint64
	// DirectSent counts the copies of newly accepted states sent straight to
	// random members (Config.RumourFanout), outside the gossip queue.
	DirectSent uint64
	// SeederSent counts this node's own app-state changes sent straight to
	// a seeder, outside the gossip queue.
	SeederSent uint64
	// AppRecords counts the times a newer complete app-state record of
	// another member was taken (and shown by Members).
	AppRecords uint64
	// AppRefused counts app-state messages and push/pull records refused
	// after decoding: malformed, over MaxApps apps or not matching their
	// digest. They change nothing.
	AppRefused uint64
	// RefusedSeeders counts members (each generation once) that claim the
	// seeder role without an announcement signed by a pinned key: they are
	// treated as agents, never as an origin.
	RefusedSeeders uint64
	// AppRefusedOverCap counts push/pull records refused unread for a cap:
	// over the bytes a record of MaxApps apps may take, or past the records
	// one push/pull may carry (one per member, at most 65 536).
	AppRefusedOverCap uint64
}

// Sentinel errors; match them with errors.Is.
var (
	// ErrTooManyApps: SetApps was given more apps than Config.MaxApps.
	ErrTooManyApps = errors.New("too many apps to gossip")
	// ErrTooManyStates: a published desired state is for a new (app,
	// environment) while MaxDesiredStates are held.
	ErrTooManyStates = errors.New("too many desired states to gossip")
	// ErrStateTooLarge: a published desired state is over MaxDesiredBytes.
	ErrStateTooLarge = errors.New("desired state too large to gossip")
	// ErrStale: a published desired state is not newer than the one held.
	ErrStale = errors.New("desired state is not newer than the one held")
	// ErrBadAddress: a join address is not host:port.
	ErrBadAddress = errors.New("malformed address")
	// ErrNotStarted: the node must be started first.
	ErrNotStarted = errors.New("gossip node not started")
	// ErrClosed: the node has been closed.
	ErrClosed = errors.New("gossip node closed")
)
