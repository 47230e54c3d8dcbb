package gossip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// source says where a desired state came from, for logs.
type source string

const (
	fromLocal    source = "publish"
	fromGossip   source = "gossip"
	fromPushPull source = "push_pull"
)

// Refusal reasons, as logged.
const (
	reasonUntrusted = "untrusted"
	reasonInvalid   = "invalid"
	reasonStale     = "stale"
	reasonOverCap   = "over_cap"
)

// load reads StatePath: the verified states become the held ones and every
// recorded sequence becomes a floor that older states cannot pass.
func (n *Node) load() error {
	if n.cfg.StatePath == "" {
		return nil
	}
	f, err := readStateFile(n.cfg.StatePath)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, seq := range f.Highest {
		if !strings.Contains(key, "@") {
			key = release.StateKey(key, "") // written before environments: the app's default
		}
		n.highest[key] = max(n.highest[key], seq)
	}
	for _, sd := range f.Desired {
		d, err := n.cfg.Trust.VerifyDesired(sd)
		if err != nil {
			// The keyring changed since it was accepted. Its sequence stays
			// a floor, but it is no longer served.
			u, uerr := sd.Unverified()
			if uerr == nil && u.App != "" {
				n.highest[u.Key()] = max(n.highest[u.Key()], u.Sequence)
			}
			msg := "persisted desired state no longer verifies (the keys pinned changed): not served; its sequence stays a floor, so the next state issued for it supersedes it"
			if n.cfg.Role == RoleSeeder {
				msg = "persisted desired state no longer verifies (signed by a key this seeder neither holds nor pins: it ran with other keys): not served; " +
					"the next publish of the app in its environment supersedes it, signed with this seeder's key"
			}
			n.log.Warn(msg, zap.String("path", n.cfg.StatePath), zap.String("app", u.App), zap.String("env", u.EnvName()),
				zap.Uint64("seq", u.Sequence), zap.String("key_id", sd.KeyID), zap.Error(err))
			continue
		}
		if cur, ok := n.desired[d.Key()]; ok && cur.state.Sequence >= d.Sequence {
			continue
		}
		n.holdLocked(d.Key(), entry{signed: sd, state: d})
		n.highest[d.Key()] = max(n.highest[d.Key()], d.Sequence)
	}
	return nil
}

// Publish injects a desired state from this node (the seeder). It is checked
// exactly like one received from the cluster: it must verify against the
// keyring and its sequence must be higher than the highest held for its app.
// It is then persisted and broadcast. Publishing the state already held is a
// no-op; anything else not newer fails with ErrStale. A state over
// MaxDesiredBytes fails with ErrStateTooLarge, and one for a new (app,
// environment) once MaxDesiredStates are held with ErrTooManyStates: the
// cluster would refuse to carry them.
func (n *Node) Publish(sd release.SignedDesiredState) error {
	n.life.Lock()
	started, closing := n.started, n.closing
	n.life.Unlock()
	switch {
	case closing:
		return fmt.Errorf("publish: %w", ErrClosed)
	case !started:
		return fmt.Errorf("publish: %w", ErrNotStarted)
	}
	if js, err := json.Marshal(sd); err != nil {
		return fmt.Errorf("publish: %w", err)
	} else if len(js) > MaxDesiredBytes {
		return fmt.Errorf("publish: %w: %d bytes, over %d", ErrStateTooLarge, len(js), MaxDesiredBytes)
	}
	if err := n.accept(sd, fromLocal); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// Desired returns the accepted desired state for key (release.StateKey of an
// app and environment), decoded and as signed.
func (n *Node) Desired(key string) (release.DesiredState, release.SignedDesiredState, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.desired[key]
	return e.state, cloneSigned(e.signed), ok
}

// cloneSigned copies the envelope's byte slices, so that neither the caller
// nor the node can change the other's copy.
func cloneSigned(sd release.SignedDesiredState) release.SignedDesiredState {
	sd.Payload = bytes.Clone(sd.Payload)
	sd.Sig = bytes.Clone(sd.Sig)
	return sd
}

// DesiredAll returns every accepted desired state, sorted by key (app, then
// environment).
func (n *Node) DesiredAll() []release.SignedDesiredState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.allLocked()
}

func (n *Node) allLocked() []release.SignedDesiredState {
	keys := make([]string, 0, len(n.desired))
	for key := range n.desired {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	out := make([]release.SignedDesiredState, len(keys))
	for i, key := range keys {
		out[i] = cloneSigned(n.desired[key].signed)
	}
	return out
}

// HighestSeq is the highest sequence accepted for key (release.StateKey),
// persisted ones included; 0 if none.
func (n *Node) HighestSeq(key string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.highest[key]
}

// accept is the one path every desired state takes, wherever it came from:
// verify, compare with the highest sequence, persist, then broadcast and
// rumour. A refused state changes nothing but a counter; only a state taken
// here for the first time is passed on, so copies of it end here.
func (n *Node) accept(sd release.SignedDesiredState, src source) error {
	if n.heldAlready(sd) {
		return nil
	}
	n.countVerification()
	d, err := n.cfg.Trust.VerifyDesired(sd)
	if err != nil {
		reason := reasonInvalid
		if errors.Is(err, release.ErrUnknownKey) {
			reason = reasonUntrusted
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if reason == reasonUntrusted {
			n.stats.RefusedUntrusted++
		} else {
			n.stats.RefusedInvalid++
		}
		u, _ := sd.Unverified() // best effort, for the log and the refusal only
		n.logRefusalLocked(src, reason, u.App, u.Sequence, sd.KeyID, err)
		if src != fromLocal {
			n.noteRefusalLocked(u.App, u.Env, u.Sequence, n.refusalReason(sd, err))
		}
		return err
	}
	msg, err := n.take(d, sd, src)
	if err != nil || msg == nil {
		return err
	}
	// Outside n.mu: sending goes through memberlist.
	n.rumour(d, msg)
	return nil
}

// take records a verified state if it is newer than the one held, persists
// and queues it, and returns it encoded for rumour; nil for the state
// already held.
func (n *Node) take(d release.DesiredState, sd release.SignedDesiredState, src source) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := d.Key()
	high := n.highest[key]
	if err := release.CheckSequence(high, d.Sequence); err != nil {
		n.stats.RefusedInvalid++
		n.logRefusalLocked(src, reasonInvalid, d.App, d.Sequence, sd.KeyID, err)
		if src != fromLocal {
			n.noteRefusalLocked(d.App, d.Env, d.Sequence, RefusedSequenceJump)
		}
		return nil, err
	}
	switch {
	case d.Sequence == high:
		n.stats.Duplicates++
		if cur, ok := n.desired[key]; ok && sameEnvelope(cur.signed, sd) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: sequence %d for %s is already held with other contents", ErrStale, d.Sequence, key)
	case d.Sequence < high:
		n.stats.RefusedStale++
		n.logRefusalLocked(src, reasonStale, d.App, d.Sequence, sd.KeyID, nil)
		if cur, ok := n.desired[key]; ok && src != fromLocal && d.Issued.After(cur.state.Issued) {
			// Issued after the state held, yet numbered below it: a seeder
			// whose store was reset. A lagging peer's state is older.
			n.noteRefusalLocked(d.App, d.Env, d.Sequence, RefusedOlderSequence)
		}
		return nil, fmt.Errorf("%w: sequence %d for %s is below the %d held", ErrStale, d.Sequence, key, high)
	}
	if _, ok := n.desired[key]; !ok && len(n.desired) >= MaxDesiredStates {
		err := fmt.Errorf("%w: %s would be one more than the %d held", ErrTooManyStates, key, MaxDesiredStates)
		n.stats.RefusedOverCap++
		n.logRefusalLocked(src, reasonOverCap, d.App, d.Sequence, sd.KeyID, err)
		return nil, err
	}

	sd = cloneSigned(sd)
	// Persist first: a state gossiped on but lost in a crash could be
	// followed by an older one after restart.
	if n.cfg.StatePath != "" {
		if err := n.persistLocked(key, sd, d.Sequence); err != nil {
			n.logOnceLocked("persist/"+key+"/"+strconv.FormatUint(d.Sequence, 10), func(l *zap.Logger) {
				l.Error("cannot persist desired state; not accepting it", zap.String("key", key), zap.Uint64("seq", d.Sequence), zap.Error(err))
			})
			return nil, err
		}
	}
	n.holdLocked(key, entry{signed: sd, state: d, accepted: time.Now()})
	n.highest[key] = d.Sequence
	n.clearRefusalLocked(key, d.Sequence)
	n.stats.Accepted++
	msg := n.broadcastLocked(d, sd)
	n.notify()
	tm, _ := d.Target.Unverified() // verified above
	n.log.Info("accepted desired state", zap.String("app", d.App), zap.String("env", d.EnvName()), zap.Uint64("seq", d.Sequence),
		zap.String("version", tm.Version), zap.String("release_id", string(tm.ReleaseID)),
		zap.String("source", string(src)))
	return msg, nil
}

// heldAlready reports, and counts as a duplicate, an envelope identical to
// one already accepted: gossip delivers each state many times, and this
// spares verifying the copies. It looks the signature up, so a push/pull
// of every held state costs one lookup per state.
func (n *Node) heldAlready(sd release.SignedDesiredState) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if key, ok := n.bySig[string(sd.Sig)]; ok && sameEnvelope(n.desired[key].signed, sd) {
		n.stats.Duplicates++
		return true
	}
	return false
}

// holdLocked makes e the state held for key.
func (n *Node) holdLocked(key string, e entry) {
	if old, ok := n.desired[key]; ok {
		delete(n.bySig, string(old.signed.Sig))
	}
	n.desired[key] = e
	n.bySig[string(e.signed.Sig)] = key
}

// countVerification counts a desired state about to have its signatures
// checked: the costly step that the caps bound.
func (n *Node) countVerification() {
	n.mu.Lock()
	n.stats.Verifications++
	n.mu.Unlock()
}

func sameEnvelope(a, b release.SignedDesiredState) bool {
	return a.KeyID == b.KeyID && bytes.Equal(a.Sig, b.Sig) && bytes.Equal(a.Payload, b.Payload)
}

// persistLocked writes the held states with sd in place of key's.
func (n *Node) persistLocked(key string, sd release.SignedDesiredState, seq uint64) error {
	f := stateFile{Highest: make(map[string]uint64, len(n.highest)+1)}
	for k, s := range n.highest {
		f.Highest[k] = s
	}
	f.Highest[key] = seq
	for k, e := range n.desired {
		if k != key {
			f.Desired = append(f.Desired, e.signed)
		}
	}
	f.Desired = append(f.Desired, sd)
	return writeStateFile(n.cfg.StatePath, f)
}

// broadcastLocked queues the state for gossip under the name
// "desired/<app>@<env>", replacing any older one still queued for it, and
// returns it encoded. A state that does not fit one packet even deflated is
// not queued: it is left to rumour (over streams) and push/pull.
func (n *Node) broadcastLocked(d release.DesiredState, sd release.SignedDesiredState) []byte {
	limit := maxBroadcast(len(n.cfg.SecretKeys) > 0)
	msg, err := encodeDesired(sd, limit)
	if err != nil {
		n.logOnceLocked("encode/"+d.Key()+"/"+strconv.FormatUint(d.Sequence, 10), func(l *zap.Logger) {
			l.Error("cannot encode desired state; it will spread by push/pull only", zap.String("app", d.App),
				zap.Uint64("seq", d.Sequence), zap.Error(err))
		})
		return nil
	}
	if len(msg) > limit {
		n.logOnceLocked("broadcast/"+d.Key()+"/"+strconv.FormatUint(d.Sequence, 10), func(l *zap.Logger) {
			l.Warn("desired state too large to broadcast; it will spread only by direct sends (unless turned off) and push/pull",
				zap.String("app", d.App), zap.Uint64("seq", d.Sequence), zap.Int("bytes", len(msg)), zap.Int("limit", limit))
		})
		return msg
	}
	n.queue.Queue("desired/"+d.Key(), msg)
	return msg
}

// logRefusalLocked logs a refused state, at most once per refusalLogEvery
// for each reason and source: the line names the first state refused for
// it in that time and how many more were refused since the last line. Stale
// states are routine (a peer that has not caught up yet pushes its older
// state) and go to debug; the others to warn. States published locally are
// not logged: Publish returns the error.
func (n *Node) logRefusalLocked(src source, reason, app string, seq uint64, keyID string, err error) {
	if src == fromLocal {
		return
	}
	n.refusals.log("desired/"+reason+"/"+string(src), n.now(), func(suppressed zap.Field) {
		fields := []zap.Field{zap.String("reason", reason), zap.String("app", app), zap.Uint64("seq", seq),
			zap.String("key_id", keyID), zap.String("source", string(src)), suppressed}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		if reason == reasonStale {
			n.log.Debug("refused desired state", fields...)
			return
		}
		n.log.Warn("refused desired state", fields...)
	})
}

func (n *Node) logOnceLocked(key string, log func(*zap.Logger)) {
	if _, ok := n.logged[key]; ok {
		return
	}
	if len(n.logged) >= maxLogged {
		clear(n.logged)
	}
	n.logged[key] = struct{}{}
	log(n.log)
}

// handleMsg takes a user message memberlist received.
func (n *Node) handleMsg(msg []byte) {
	if len(msg) == 0 {
		return
	}
	switch msg[0] {
	case msgDesired, msgDesiredFlate:
		sd, err := decodeDesired(msg)
		if err != nil {
			n.refuseUnread(fromGossip, 1, err)
			return
		}
		_ = n.accept(sd, fromGossip) // counted and logged inside
	case msgApps:
		n.handleApps(msg)
	default:
		n.mu.Lock()
		n.logOnceLocked("type/"+strconv.Itoa(int(msg[0])), func(l *zap.Logger) {
			l.Debug("ignoring message of unknown type; is a newer version in the cluster?", zap.Int("type", int(msg[0])))
		})
		n.mu.Unlock()
	}
}

// mergeRemote takes the desired states and app-state records a peer sent
// in a push/pull.
func (n *Node) mergeRemote(buf []byte) {
	if len(buf) == 0 {
		return
	}
	st, err := decodePushPull(buf, defaultPushPullLimits)
	if err != nil {
		n.refuseUnread(fromPushPull, 1, err)
		return
	}
	for _, sd := range st.desired {
		_ = n.accept(sd, fromPushPull)
	}
	if st.desiredRefused > 0 {
		n.refuseUnread(fromPushPull, st.desiredRefused,
			fmt.Errorf("%w: desired states past %d in one push/pull, or over %d bytes", errOverCap, MaxDesiredStates, MaxDesiredBytes))
	}
	n.mergeRecords(st.records, st.recordsRefused)
}

// refuseUnread counts k desired states refused before their
// signatures were checked: over a cap (err wraps errOverCap) or
// undecodable.
func (n *Node) refuseUnread(src source, k int, err error) {
	reason := reasonInvalid
	n.mu.Lock()
	defer n.mu.Unlock()
	if errors.Is(err, errOverCap) {
		reason = reasonOverCap
		n.stats.RefusedOverCap += uint64(k)
	} else {
		n.stats.RefusedInvalid += uint64(k)
	}
	n.logRefusalLocked(src, reason, "", 0, "", err)
}

// localState is what this node sends in a push/pull: every accepted
// desired state and the app-state records of every live member. Past
// maxLocalState it sends its own record only.
func (n *Node) localState() []byte {
	n.mu.Lock()
	all := n.allLocked()
	n.mu.Unlock()
	if len(all) > MaxDesiredStates {
		all = all[:MaxDesiredStates] // only from a state file written before the cap; receivers would refuse the rest
	}
	records := n.pushPullRecords()
	if len(all) == 0 && len(records) == 0 {
		return nil
	}
	if len(records) > maxPushPullRecords {
		records = records[:maxPushPullRecords]
	}
	b, err := encodePushPull(all, records)
	if err != nil {
		n.log.Error("cannot encode push/pull state", zap.Error(err))
		return nil
	}
	if len(b) > maxLocalState {
		n.mu.Lock()
		n.logOnceLocked("push-pull-size", func(l *zap.Logger) {
			l.Error("push/pull state too large; sending only this node's app states", zap.Int("bytes", len(b)),
				zap.Int("limit", maxLocalState), zap.Int("records", len(records)))
		})
		n.mu.Unlock()
		if b, err = encodePushPull(all, n.ownRecord()); err != nil {
			return nil
		}
	}
	return b
}

// AcceptedAt reports the sequence of key's desired state (release.StateKey)
// and when this node accepted it (zero time for one loaded from disk at
// Start). Benchmarks use it to measure how fast a state spreads.
func (n *Node) AcceptedAt(key string) (seq uint64, at time.Time, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.desired[key]
	return e.state.Sequence, e.accepted, ok
}
