package gossip

import (
	"errors"
	"time"

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

// AppState is one app on one node, as gossiped. It says both what the
// node works towards (Version, ReleaseID, Phase) and what it runs
// (RunningVersion, RunningReleaseID): after a failed install or a health
// check that rolled back, the two differ.
type AppState struct {
	App string
	// Version of the release this phase is about.
	Version string
	// ReleaseID is the release this phase is about: the target being
	// downloaded or installed, or the active one.
	ReleaseID release.ID
	Phase     Phase
	// RunningVersion and RunningReleaseID are the release the node runs:
	// the installer's current one; empty when it runs none of the app (or,
	// in a record of a node older than these fields, when the phase is not
	// active: such nodes did not say).
	RunningVersion   string
	RunningReleaseID release.ID
	// Healthy describes the running release, never a target that failed:
	// after a rollback it is the health of the release put back. False
	// when nothing runs, or while the running release's health check has
	// not passed yet.
	Healthy bool
	// Refused is why the node refused the app's newest desired state in
	// its environment (one of the Refused* codes), "" when it did not.
	// It changes at most once per RefusalHold.
	Refused string
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

// Refusal codes: why a node refused a desired state, as AppState.Refused
// carries them. They are short on purpose: one byte on the wire, and a
// phrase an operator reads in `swarm status`.
const (
	// RefusedUntrustedKey: signed by a rollout key the node does not pin.
	RefusedUntrustedKey = "untrusted key"
	// RefusedWrongRole: signed by a key the node pins as a release key.
	RefusedWrongRole = "wrong key role"
	// RefusedUntrustedRelease: a manifest in it is signed by no pinned
	// release key.
	RefusedUntrustedRelease = "untrusted release key"
	// RefusedTooFewSignatures: a manifest in it has fewer release
	// signatures than the node's threshold.
	RefusedTooFewSignatures = "too few release signatures"
	// RefusedBadSignature: a signature does not verify.
	RefusedBadSignature = "bad signature"
	// RefusedSequenceJump: its sequence runs more than
	// release.MaxSequenceJump past the one held.
	RefusedSequenceJump = "sequence jump"
	// RefusedOlderSequence: issued after the state held but with a lower
	// sequence (a seeder whose store was reset or replaced): a downgrade
	// of the sequence, which nodes never take.
	RefusedOlderSequence = "older sequence"
	// RefusedExpired: the state held has expired (AppState.Stale).
	RefusedExpired = "expired"
	// RefusedInvalid: any other reason (malformed, invalid fields).
	RefusedInvalid = "invalid"
)

// refusalCodes numbers the refusal codes on the wire; the index is the
// code. New codes go at the end.
var refusalCodes = [...]string{"", RefusedUntrustedKey, RefusedWrongRole, RefusedUntrustedRelease, RefusedTooFewSignatures,
	RefusedBadSignature, RefusedSequenceJump, RefusedOlderSequence, RefusedExpired, RefusedInvalid}

// RefusalHold is the shortest time between two changes of the refusal a
// node reports for one app, so that a stream of refused states (or an
// attacker alternating causes) cannot make it re-gossip its record more
// often. A refusal that appears where there was none, or clears because a
// state was accepted, is reported at once.
const RefusalHold = 10 * time.Second

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
