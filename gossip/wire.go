package gossip

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/swarmdeploy/swarm/release"
)

// Message types: the first byte of every message this package sends through
// memberlist. msgApps (4) is in appwire.go.
const (
	// msgDesired carries one signed desired state as JSON.
	msgDesired byte = 1
	// msgDesiredFlate is msgDesired with the JSON deflated: used only when
	// the plain message does not fit one packet (long app names or versions).
	msgDesiredFlate byte = 2
	// msgPushPull carries every accepted desired state in a push/pull, as
	// JSON; still read, no longer sent.
	msgPushPull byte = 3
	// msgPushPullFlate carries the desired states and the app-state records
	// of every live member in a push/pull, deflated.
	msgPushPullFlate byte = 5
)

// Packet budget. memberlist fills UDP packets of udpBufferSize bytes; a
// broadcast shares one with a 2-byte compound header, a 2-byte per-message
// length, memberlist's 1-byte user-message type and, when encryption is on,
// 29 bytes of AES-GCM overhead (version byte, nonce and tag).
const (
	udpBufferSize     = 1400
	broadcastOverhead = 2 + 2 + 1
	encryptOverhead   = 1 + 12 + 16
	// maxInflated bounds what a deflated message may expand to.
	maxInflated = 64 << 10
)

// maxBroadcast is the largest message (type byte included) memberlist can
// send as one broadcast.
func maxBroadcast(encrypted bool) int {
	n := udpBufferSize - broadcastOverhead
	if encrypted {
		n -= encryptOverhead
	}
	return n
}

// encodeDesired frames sd as a broadcast message, deflated if the plain form
// is over limit. The result may still be over limit; the caller checks.
func encodeDesired(sd release.SignedDesiredState, limit int) ([]byte, error) {
	js, err := json.Marshal(sd)
	if err != nil {
		return nil, fmt.Errorf("encode desired state: %w", err)
	}
	if 1+len(js) <= limit {
		return append([]byte{msgDesired}, js...), nil
	}
	var buf bytes.Buffer
	buf.WriteByte(msgDesiredFlate)
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("encode desired state: %w", err)
	}
	if _, err := fw.Write(js); err != nil {
		return nil, fmt.Errorf("encode desired state: %w", err)
	}
	if err := fw.Close(); err != nil {
		return nil, fmt.Errorf("encode desired state: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeDesired reads a msgDesired or msgDesiredFlate message.
func decodeDesired(msg []byte) (release.SignedDesiredState, error) {
	var sd release.SignedDesiredState
	if len(msg) == 0 {
		return sd, errors.New("empty message")
	}
	js := msg[1:]
	switch msg[0] {
	case msgDesired:
	case msgDesiredFlate:
		fr := flate.NewReader(bytes.NewReader(js))
		defer fr.Close()
		b, err := io.ReadAll(io.LimitReader(fr, maxInflated+1))
		if err != nil {
			return sd, fmt.Errorf("inflate desired state: %w", err)
		}
		if len(b) > maxInflated {
			return sd, fmt.Errorf("inflate desired state: more than %d bytes", maxInflated)
		}
		js = b
	default:
		return sd, fmt.Errorf("message type %d is not a desired state", msg[0])
	}
	if err := json.Unmarshal(js, &sd); err != nil {
		return sd, fmt.Errorf("decode desired state: %w", err)
	}
	return sd, nil
}

// Push/pull bounds: what one peer's state may make this node decode.
const (
	// maxPushPullInflated bounds a push/pull state once inflated: every
	// desired state and 5000 members' records of 32 apps fit.
	maxPushPullInflated = 64 << 20
	// maxPushPullRecords bounds the app-state records taken from one
	// push/pull; those past it are refused.
	maxPushPullRecords = 1 << 16
	// maxLocalState bounds what this node sends, well under the 20 MiB
	// memberlist accepts for a whole push/pull, membership included.
	maxLocalState = 8 << 20
)

// pushPull is the desired-state part of a push/pull, as JSON.
type pushPull struct {
	Desired []release.SignedDesiredState `json:"desired"`
}

// pushPullLimits bound what decoding one push/pull may cost.
type pushPullLimits struct {
	inflated int64 // bytes once inflated
	records  int   // app-state records; those past it are refused
}

var defaultPushPullLimits = pushPullLimits{inflated: maxPushPullInflated, records: maxPushPullRecords}

// pushPullState is what a peer sent in a push/pull.
type pushPullState struct {
	desired []release.SignedDesiredState
	records [][]byte // each an encoded app-state record, not yet decoded
	refused int      // records over a bound, skipped
}

// encodePushPull frames the desired states and the encoded app-state
// records as msgPushPullFlate: one deflated stream of
// (varint length, desired-state JSON), varint record count, then each
// record as (varint length, record).
func encodePushPull(states []release.SignedDesiredState, records [][]byte) ([]byte, error) {
	js, err := json.Marshal(pushPull{Desired: states})
	if err != nil {
		return nil, fmt.Errorf("encode push/pull state: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteByte(msgPushPullFlate)
	fw, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("encode push/pull state: %w", err)
	}
	var n [binary.MaxVarintLen64]byte
	put := func(b []byte) {
		fw.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]) // a bytes.Buffer does not fail
		fw.Write(b)
	}
	put(js)
	fw.Write(n[:binary.PutUvarint(n[:], uint64(len(records)))])
	for _, r := range records {
		put(r)
	}
	if err := fw.Close(); err != nil {
		return nil, fmt.Errorf("encode push/pull state: %w", err)
	}
	return buf.Bytes(), nil
}

// decodePushPull reads msgPushPullFlate, or msgPushPull (desired states
// only) from nodes that predate app-state records, within lim.
func decodePushPull(msg []byte, lim pushPullLimits) (pushPullState, error) {
	var st pushPullState
	if len(msg) == 0 {
		return st, errors.New("push/pull state is empty")
	}
	switch msg[0] {
	case msgPushPull:
		var pp pushPull
		if err := json.Unmarshal(msg[1:], &pp); err != nil {
			return st, fmt.Errorf("decode push/pull state: %w", err)
		}
		st.desired = pp.Desired
		return st, nil
	case msgPushPullFlate:
	default:
		return st, fmt.Errorf("push/pull state has unknown type %d", msg[0])
	}
	fr := flate.NewReader(bytes.NewReader(msg[1:]))
	defer fr.Close()
	lr := &io.LimitedReader{R: fr, N: lim.inflated}
	r := bufio.NewReader(lr)
	fail := func(what string, err error) (pushPullState, error) {
		if lr.N <= 0 {
			return st, fmt.Errorf("decode push/pull state: more than %d bytes inflated", lim.inflated)
		}
		return st, fmt.Errorf("decode push/pull state: %s: %w", what, err)
	}
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return fail("desired states", err)
	}
	if size > uint64(lim.inflated) {
		return fail("desired states", fmt.Errorf("%d bytes", size))
	}
	js := make([]byte, size)
	if _, err := io.ReadFull(r, js); err != nil {
		return fail("desired states", err)
	}
	var pp pushPull
	if err := json.Unmarshal(js, &pp); err != nil {
		return fail("desired states", err)
	}
	st.desired = pp.Desired
	count, err := binary.ReadUvarint(r)
	if err != nil {
		return fail("app-state records", err)
	}
	if count > uint64(lim.records) {
		st.refused = int(min(count-uint64(lim.records), math.MaxInt32))
		count = uint64(lim.records)
	}
	for range count {
		size, err := binary.ReadUvarint(r)
		if err != nil {
			return fail("app-state records", err)
		}
		if size > maxRecordBytes {
			if _, err := io.CopyN(io.Discard, r, int64(min(size, uint64(lim.inflated)))); err != nil {
				return fail("app-state records", err)
			}
			st.refused++
			continue
		}
		rec := make([]byte, size)
		if _, err := io.ReadFull(r, rec); err != nil {
			return fail("app-state records", err)
		}
		st.records = append(st.records, rec)
	}
	return st, nil
}
