package gossip

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/swarmdeploy/swarm/release"
)

// A node's app states travel as one record, versioned by (generation,
// sequence): the generation is the wall clock in nanoseconds at Start and is
// advertised in the node meta; the sequence goes up by one on every SetApps
// that changes something. Each app's state is a part that carries the
// sequence at which it last changed. A record's header names the node, its
// generation and sequence, its epoch (the sequence at which the set of apps
// last lost a member: every part is at least that new), the number of apps
// and a digest of all the parts.
//
// Encoding (integers are unsigned varints unless said otherwise; a string or
// a part is a varint length then its bytes):
//
//	record = header, number of parts, parts
//	header = node, generation (8 bytes, big endian), sequence,
//	         sequence − epoch, apps (1 byte), digest (16 bytes)
//	part   = sequence − epoch when the app last changed, app, version,
//	         flags (1 byte: 1 healthy, 2 release id follows, 4 stale,
//	         8 running release follows, 16 refusal follows),
//	         [sha256 of the release id, 32 bytes], phase (1 byte),
//	         progress in thousandths, rate in KiB/s, error,
//	         [running version, [sha256 of the running release id, 32
//	         bytes, when the running version is not empty]],
//	         [refusal code (1 byte)]
//	digest = SHA-256, cut to 16 bytes, over every part sorted by app, each
//	         as (varint length, part)
//
// The running release (flag 8) travels only when it is not the part's
// own release in the active phase, so that the part of a node settled on
// its target is byte for byte what nodes built before these fields send
// and take. A part without flag 8 runs its own release when active, and
// nothing known otherwise (what an older node's part says). Parts with
// flag 8 or 16 are refused by nodes built before them (they refuse unknown
// flags): in a mixed cluster, upgrade the seeders first; an older agent
// then only misses its peers' transitional states, which it does not use.
//
// A broadcast (msgApps) is a header with the one part that changed, or with
// none when removing apps left none; a push/pull carries whole records. A
// receiver shows a record only once the parts it holds match a header's
// count and digest, so it never shows a mix of two versions of a node's
// apps. The header is the unit a signature would cover (issue 13): signed,
// it authenticates every part through the digest.

// msgApps carries one app-state record header with at most one part.
const msgApps byte = 4

// MaxApps is the most apps a node may gossip: Config.MaxApps' default and
// upper bound, and the most any node takes in one record.
const MaxApps = 32

// Bounds on what a record may hold, checked when decoding.
const (
	// maxAppError is how much of AppState.Error travels.
	maxAppError = 200
	// maxPartBytes bounds one encoded app state; the largest valid one
	// (63-byte app, 48-byte version, release id, 200-byte error, running
	// version and id, refusal) takes under 450.
	maxPartBytes = 512
	// maxNodeName is Config.Validate's bound on names.
	maxNodeName = 128
	digestSize  = 16
	// maxRecordBytes bounds one encoded record, header and parts.
	maxRecordBytes = 2 + maxNodeName + 8 + 2*binary.MaxVarintLen64 + 1 + digestSize +
		1 + MaxApps*(2+maxPartBytes)
)

// phases numbers the phases on the wire; the index is the code.
var phases = [...]Phase{"", PhaseDownloading, PhaseStaged, PhaseInstalling, PhaseActive, PhaseFailed, PhaseRolledBack}

func phaseCode(p Phase) (byte, bool) {
	i := slices.Index(phases[:], p)
	return byte(i), i >= 0
}

// recordHeader says which version of a node's app states a record or a part
// belongs to.
type recordHeader struct {
	node   string
	gen    uint64
	seq    uint64
	epoch  uint64
	count  int
	digest [digestSize]byte
}

// appPart is one app's state as carried in a record.
type appPart struct {
	app   string
	seq   uint64 // the record sequence at which it last changed
	raw   []byte // encoded, as the digest covers it
	state AppState
}

// encodeAppContent is the part's encoding after its sequence: what tells
// whether an app's state changed. Progress, rate and error are cut to what
// travels.
func encodeAppContent(a AppState) []byte {
	b := appendString(make([]byte, 0, 64), a.App)
	b = appendString(b, a.Version)
	var flags byte
	if a.Healthy {
		flags |= 1
	}
	if a.Stale {
		flags |= 4
	}
	id, ok := idBytes(a.ReleaseID)
	if ok {
		flags |= 2
	}
	running := a.Phase != PhaseActive || a.RunningReleaseID != a.ReleaseID || a.RunningVersion != a.Version
	if running {
		flags |= 8
	}
	refusal, _ := refusalCode(a.Refused)
	if refusal != 0 {
		flags |= 16
	}
	b = append(b, flags)
	if flags&2 != 0 {
		b = append(b, id...)
	}
	code, _ := phaseCode(a.Phase)
	b = append(b, code)
	b = binary.AppendUvarint(b, uint64(permille(a.Progress)))
	b = binary.AppendUvarint(b, uint64(min(max(a.Rate, 0)>>10, math.MaxUint32)))
	b = appendString(b, truncate(a.Error, maxAppError))
	if running {
		if rid, ok := idBytes(a.RunningReleaseID); ok && a.RunningVersion != "" {
			b = appendString(b, a.RunningVersion)
			b = append(b, rid...)
		} else {
			b = appendString(b, "") // runs nothing
		}
	}
	if refusal != 0 {
		b = append(b, refusal)
	}
	return b
}

// idBytes is id's sha256, false for an empty or malformed id.
func idBytes(id release.ID) ([]byte, bool) {
	if id == "" {
		return nil, false
	}
	b, err := hex.DecodeString(id.Hex())
	return b, err == nil && len(b) == sha256.Size
}

func refusalCode(s string) (byte, bool) {
	i := slices.Index(refusalCodes[:], s)
	return byte(max(i, 0)), i >= 0
}

// checkAppExtras checks what checkApps does not: the running release and
// the refusal code.
func checkAppExtras(apps []AppState) error {
	for _, a := range apps {
		if (a.RunningVersion == "") != (a.RunningReleaseID == "") {
			return fmt.Errorf("app state %s: running version %q and release id %q go together", a.App, a.RunningVersion, a.RunningReleaseID)
		}
		if a.RunningVersion != "" {
			if err := release.ValidateVersion(a.RunningVersion); err != nil {
				return fmt.Errorf("app state %s: running: %w", a.App, err)
			}
			if _, err := release.ParseID(string(a.RunningReleaseID)); err != nil {
				return fmt.Errorf("app state %s: running: %w", a.App, err)
			}
		}
		if _, ok := refusalCode(a.Refused); !ok {
			return fmt.Errorf("app state %s: unknown refusal %q", a.App, a.Refused)
		}
	}
	return nil
}

// newPart makes the part for content that changed at seq, in a record whose
// epoch is epoch.
func newPart(seq, epoch uint64, content []byte) (appPart, error) {
	raw := binary.AppendUvarint(make([]byte, 0, len(content)+binary.MaxVarintLen64), seq-epoch)
	raw = append(raw, content...)
	return decodePart(raw, epoch, seq)
}

// decodePart reads one part of a record with the given epoch and sequence.
func decodePart(raw []byte, epoch, seq uint64) (appPart, error) {
	r := reader{b: raw}
	d := r.uvarint()
	app := r.str(63, "app name")
	version := r.str(48, "version")
	flags := r.byte()
	var id release.ID
	if flags&2 != 0 {
		if b := r.next(sha256.Size); b != nil {
			id = release.ID(release.IDPrefix + hex.EncodeToString(b))
		}
	}
	code := r.byte()
	progress := r.uvarint()
	rate := r.uvarint()
	errMsg := r.str(maxAppError, "error")
	var runVersion string
	var runID release.ID
	if flags&8 != 0 {
		runVersion = r.str(48, "running version")
		if runVersion != "" {
			if b := r.next(sha256.Size); b != nil {
				runID = release.ID(release.IDPrefix + hex.EncodeToString(b))
			}
		}
	} else if int(code) < len(phases) && phases[code] == PhaseActive { // on its own release
		runVersion, runID = version, id
	}
	refused := ""
	if flags&16 != 0 {
		// A code this node does not know yet reads as "invalid": still a
		// refusal, its cause newer than this build.
		refused = RefusedInvalid
		if c := r.byte(); c != 0 && int(c) < len(refusalCodes) {
			refused = refusalCodes[c]
		}
	}
	switch {
	case r.err != nil:
		return appPart{}, fmt.Errorf("app state: %w", r.err)
	case len(r.b) > 0:
		return appPart{}, fmt.Errorf("app state %s: %d bytes after its end", app, len(r.b))
	case d > seq-epoch:
		return appPart{}, fmt.Errorf("app state %s: changed at %d, after its record's sequence %d", app, epoch+d, seq)
	case flags&^31 != 0:
		return appPart{}, fmt.Errorf("app state %s: unknown flags %#x", app, flags)
	case int(code) >= len(phases):
		return appPart{}, fmt.Errorf("app state %s: unknown phase %d", app, code)
	case progress > 1000:
		return appPart{}, fmt.Errorf("app state %s: progress %d‰ over 1000", app, progress)
	case rate > math.MaxUint32:
		return appPart{}, fmt.Errorf("app state %s: rate %d KiB/s out of range", app, rate)
	}
	if err := release.ValidateApp(app); err != nil {
		return appPart{}, fmt.Errorf("app state: %w", err)
	}
	for _, v := range []string{version, runVersion} {
		if v != "" {
			if err := release.ValidateVersion(v); err != nil {
				return appPart{}, fmt.Errorf("app state %s: %w", app, err)
			}
		}
	}
	return appPart{app: app, seq: epoch + d, raw: raw, state: AppState{
		App:       app,
		Version:   version,
		ReleaseID: id,
		Phase:     phases[code],
		Healthy:   flags&1 != 0,

		RunningVersion:   runVersion,
		RunningReleaseID: runID,
		Refused:          refused,
		Stale:            flags&4 != 0,
		Progress:         float64(progress) / 1000,
		Rate:             int64(rate) << 10,
		Error:            errMsg,
	}}, nil
}

// digestOf is the digest of parts sorted by app.
func digestOf(parts []appPart) [digestSize]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p.raw)))])
		h.Write(p.raw)
	}
	var d [digestSize]byte
	copy(d[:], h.Sum(nil))
	return d
}

// encodeRecord encodes a header and parts (all of them, one, or none).
func encodeRecord(h recordHeader, parts []appPart) []byte {
	size := 2 + len(h.node) + 8 + 2*binary.MaxVarintLen64 + 1 + digestSize + 1
	for _, p := range parts {
		size += 2 + len(p.raw)
	}
	b := appendString(make([]byte, 0, size), h.node)
	b = binary.BigEndian.AppendUint64(b, h.gen)
	b = binary.AppendUvarint(b, h.seq)
	b = binary.AppendUvarint(b, h.seq-h.epoch)
	b = append(b, byte(h.count))
	b = append(b, h.digest[:]...)
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p.raw)))
		b = append(b, p.raw...)
	}
	return b
}

// decodeRecord reads a record within the bounds. A whole record (push/pull)
// must carry every part, sorted by app, matching its digest; a broadcast
// carries at most one. The parts alias b.
func decodeRecord(b []byte, whole bool) (recordHeader, []appPart, error) {
	h, np, r, err := decodeHeader(b, whole)
	if err != nil {
		return h, nil, err
	}
	parts := make([]appPart, 0, np)
	for range np {
		raw := r.lenPrefixed(maxPartBytes, "app state")
		if r.err != nil {
			return h, nil, fmt.Errorf("app-state record of %s: %w", h.node, r.err)
		}
		p, err := decodePart(raw, h.epoch, h.seq)
		if err != nil {
			return h, nil, fmt.Errorf("app-state record of %s: %w", h.node, err)
		}
		if k := len(parts); k > 0 && parts[k-1].app >= p.app {
			return h, nil, fmt.Errorf("app-state record of %s: apps not sorted or listed twice (%s after %s)", h.node, p.app, parts[k-1].app)
		}
		parts = append(parts, p)
	}
	if len(r.b) > 0 {
		return h, nil, fmt.Errorf("app-state record of %s: %d bytes after its end", h.node, len(r.b))
	}
	if whole && digestOf(parts) != h.digest {
		return h, nil, fmt.Errorf("app-state record of %s: parts do not match the digest", h.node)
	}
	return h, parts, nil
}

// decodeHeader reads a record's header and number of parts, and returns the
// reader at the first part.
func decodeHeader(b []byte, whole bool) (recordHeader, uint64, reader, error) {
	var h recordHeader
	if len(b) > maxRecordBytes {
		return h, 0, reader{}, fmt.Errorf("app-state record of %d bytes, over %d", len(b), maxRecordBytes)
	}
	r := reader{b: b}
	h.node = r.str(maxNodeName, "node name")
	h.gen = r.uint64()
	h.seq = r.uvarint()
	back := r.uvarint()
	h.count = int(r.byte())
	copy(h.digest[:], r.next(digestSize))
	np := r.uvarint()
	switch {
	case r.err != nil:
		return h, 0, r, fmt.Errorf("app-state record: %w", r.err)
	case h.node == "":
		return h, 0, r, errors.New("app-state record: no node name")
	case h.seq == 0 || back > h.seq:
		return h, 0, r, fmt.Errorf("app-state record of %s: sequence %d, epoch %d back", h.node, h.seq, back)
	case h.count > MaxApps:
		return h, 0, r, fmt.Errorf("app-state record of %s: %d apps, over the %d a record may carry", h.node, h.count, MaxApps)
	case np > uint64(h.count) || (whole && np != uint64(h.count)) || (!whole && np > 1):
		return h, 0, r, fmt.Errorf("app-state record of %s: %d parts for %d apps", h.node, np, h.count)
	}
	h.epoch = h.seq - back
	return h, np, r, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes from b; the first error sticks and later reads return
// zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errors.New("truncated")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte {
	if b := r.next(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if b := r.next(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errors.New("malformed varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) lenPrefixed(limit int, what string) []byte {
	n := r.uvarint()
	if r.err == nil && n > uint64(limit) {
		r.err = fmt.Errorf("%s of %d bytes, over %d", what, n, limit)
	}
	return r.next(int(n))
}

func (r *reader) str(limit int, what string) string {
	return string(r.lenPrefixed(limit, what))
}
