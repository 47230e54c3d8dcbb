package gossip

import (
	"bytes"
	"strings"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// delegate is memberlist's view of a Node: node meta, user messages,
// broadcasts and push/pull state. memberlist calls it from its own
// goroutines; every call but NodeMeta passes the node's gate, so none runs
// after Close.
type delegate struct{ n *Node }

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta is called while memberlist holds no lock of ours and must not be
// refused: the meta it returns goes in the node's alive message.
func (d *delegate) NodeMeta(limit int) []byte {
	m := d.n.currentMeta()
	if len(m) > limit {
		return nil // cannot happen: encodeMeta keeps it within metaLimit
	}
	return m
}

func (d *delegate) NotifyMsg(msg []byte) {
	if !d.n.enter() {
		return
	}
	defer d.n.exit()
	if d.n.dropMsg != nil && d.n.dropMsg(msg) {
		return
	}
	d.n.handleMsg(msg)
}

// GetBroadcasts fills the room memberlist leaves with desired states first,
// then app states.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if !d.n.enter() {
		return nil
	}
	defer d.n.exit()
	out := d.n.queue.Broadcasts(overhead, limit)
	for _, b := range out {
		limit -= overhead + len(b)
	}
	return append(out, d.n.appQueue.Broadcasts(overhead, limit)...)
}

func (d *delegate) LocalState(join bool) []byte {
	if !d.n.enter() {
		return nil
	}
	defer d.n.exit()
	return d.n.localState()
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if !d.n.enter() {
		return
	}
	defer d.n.exit()
	d.n.mergeRemote(buf)
}

// eventDelegate keeps the node's copy of the member list and turns
// membership events into Changes notifications. memberlist calls it one
// event at a time with its node lock held, the only time the *Node it passes
// may be read: it must copy what it keeps and not call back into memberlist.
type eventDelegate struct{ n *Node }

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (e *eventDelegate) NotifyJoin(node *memberlist.Node) {
	fake := e.n.setMember(node)
	if !e.n.enter() {
		return
	}
	defer e.n.exit()
	e.n.log.Debug("member joined", zap.String("member", node.Name), zap.String("addr", node.Address()))
	e.logFake(node, fake)
	e.n.notify()
}

func (e *eventDelegate) NotifyLeave(node *memberlist.Node) {
	e.n.removeMember(node.Name)
	if !e.n.enter() {
		return
	}
	defer e.n.exit()
	e.n.log.Debug("member left", zap.String("member", node.Name), zap.String("addr", node.Address()))
	e.n.notify()
}

func (e *eventDelegate) NotifyUpdate(node *memberlist.Node) {
	fake := e.n.setMember(node)
	if !e.n.enter() {
		return
	}
	defer e.n.exit()
	e.logFake(node, fake)
	e.n.notify()
}

// conflictDelegate hears of a node that claims a member's name from
// another address (restarted elsewhere), so that the rejoin loop joins it
// once memberlist can take it (knownAddrs.conflict). memberlist calls it
// with its node lock held.
type conflictDelegate struct{ n *Node }

var _ memberlist.ConflictDelegate = (*conflictDelegate)(nil)

func (c *conflictDelegate) NotifyConflict(_, other *memberlist.Node) {
	if other.Name == c.n.cfg.Name {
		return // another process under this node's name: nothing to join
	}
	c.n.known.conflict(other.Address(), c.n.now())
}

// logFake warns of a member that claims the seeder role unsigned or signed
// by a key this node does not pin (setMember says so once per member).
func (e *eventDelegate) logFake(node *memberlist.Node, fake error) {
	if fake != nil {
		e.n.log.Warn("member claims the seeder role without a signature by a pinned rollout key; treating it as an agent",
			zap.String("member", node.Name), zap.String("addr", node.Address()), zap.Error(fake))
	}
}

// logWriter routes memberlist's log.Logger into zap by the level tag at the
// start of each line, and rewrites the lines that would alarm or flood:
// see rewriteLine.
type logWriter struct {
	n   *Node
	log *zap.Logger
	// limited rate-limits the lines let through at warn that would
	// otherwise flood (rewriteLine).
	limited *rateLog
}

func newLogWriter(n *Node, log *zap.Logger) *logWriter {
	return &logWriter{n: n, log: log, limited: newRateLog(refusalLogEvery)}
}

func (w *logWriter) Write(p []byte) (int, error) {
	if !w.n.enter() {
		return len(p), nil
	}
	defer w.n.exit()
	line := bytes.TrimSpace(p)
	level, msg := zap.DebugLevel, line
	switch {
	case bytes.HasPrefix(line, []byte("[DEBUG]")):
		msg = line[len("[DEBUG]"):]
	case bytes.HasPrefix(line, []byte("[INFO]")):
		level, msg = zap.InfoLevel, line[len("[INFO]"):]
	case bytes.HasPrefix(line, []byte("[WARN]")):
		level, msg = zap.WarnLevel, line[len("[WARN]"):]
	case bytes.HasPrefix(line, []byte("[ERR]")):
		level, msg = zap.ErrorLevel, line[len("[ERR]"):]
	}
	msg = bytes.TrimSpace(msg)
	msg = bytes.TrimPrefix(msg, []byte("memberlist: "))
	text, level, suppressed := w.rewriteLine(string(msg), level)
	if w.n.stopping.Load() {
		level = zap.DebugLevel // sends failing on a closed socket, and the like
	}
	if ce := w.log.Check(level, text); ce != nil {
		ce.Write(suppressed)
	}
	return len(p), nil
}

// Lines of memberlist that rewriteLine changes.
const (
	refutingAlive   = "Refuting an alive message for "
	fallbackPing    = "Failed fallback TCP ping"
	conflictingAddr = "Conflicting address for "
)

// rewriteLine changes what memberlist says where it misleads: the refuted
// alive message loses its dump of both metas as decimal bytes (over a
// kilobyte; the name and address stay). A failed fallback TCP ping, which a
// merely busy host causes, and a conflicting address, which every node
// restarted under its name on another port causes until its old address is
// declared dead, are errors to memberlist: each becomes a warning at most
// once a minute (saying how many were held back) and a debug line
// otherwise.
func (w *logWriter) rewriteLine(msg string, level zapcore.Level) (string, zapcore.Level, zap.Field) {
	key := ""
	switch {
	case strings.HasPrefix(msg, refutingAlive):
		if i := strings.Index(msg, " meta:("); i >= 0 {
			msg = msg[:i]
		}
	case strings.HasPrefix(msg, fallbackPing):
		key = fallbackPing
	case strings.HasPrefix(msg, conflictingAddr):
		key = conflictingAddr
	}
	if key == "" {
		return msg, level, zap.Skip()
	}
	ok, held := w.limited.allow(key, w.n.now())
	switch {
	case !ok:
		return msg, zap.DebugLevel, zap.Skip()
	case held > 0:
		return msg, zap.WarnLevel, zap.Uint64("suppressed", held)
	}
	return msg, zap.WarnLevel, zap.Skip()
}
