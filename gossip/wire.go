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
)

// Caps on what one message may make a node do, chosen from the real maxima
// with room to spare and checked before the costly work: decompression,
// decoding and signature checks. What goes past a cap is refused unread,
// counted in Stats (RefusedOverCap, AppRefusedOverCap) and logged at most
// once a minute per cause (logonce.go).
const (
	// MaxDesiredStates is the most desired states, one per (app,
	// environment), a cluster carries. A node holds at most this many, so a
	// push/pull carries at most this many, and a receiver checks at most
	// this many from one push/pull and refuses the rest unread. A state for
	// a new (app, environment) past it is refused everywhere: Publish fails
	// with ErrTooManyStates, so a seeder cannot issue it. States are never
	// dropped, so the bound is on the (app, environment) pairs a cluster
	// ever carries.
	MaxDesiredStates = 1024
	// MaxDesiredBytes bounds one desired state as it travels: its signed
	// envelope as JSON, inflated. The largest real one (63-byte app name
	// and 32-byte environment, 48-byte versions, both manifests, eight bad
	// releases, a 200-byte reason and a plan of ten steps) takes under
	// 2.5 KiB; a larger state (a plan of hundreds of steps) is refused, by
	// Publish too (ErrStateTooLarge).
	MaxDesiredBytes = 8 << 10
	// maxDesiredSection bounds the desired states of one push/pull as
	// JSON: MaxDesiredStates of MaxDesiredBytes each. A push/pull whose
	// desired states claim more is refused whole before they are inflated.
	maxDesiredSection = MaxDesiredStates * MaxDesiredBytes
)

// errOverCap marks input refused unread because it is past a cap.
var errOverCap = errors.New("over a cap")

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
		if len(js) > MaxDesiredBytes {
			return sd, fmt.Errorf("%w: desired state of %d bytes, over %d", errOverCap, len(js), MaxDesiredBytes)
		}
	case msgDesiredFlate:
		fr := flate.NewReader(bytes.NewReader(js))
		defer fr.Close()
		b, err := io.ReadAll(io.LimitReader(fr, MaxDesiredBytes+1))
		if err != nil {
			return sd, fmt.Errorf("inflate desired state: %w", err)
		}
		if len(b) > MaxDesiredBytes {
			return sd, fmt.Errorf("%w: desired state inflates past %d bytes", errOverCap, MaxDesiredBytes)
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
	// push/pull, one per member: those past it are refused unread.
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
	section  int64 // bytes of the desired states, as JSON
	desired  int   // desired states decoded; those past it are refused unread
	records  int   // app-state records; those past it are refused unread
}

var defaultPushPullLimits = pushPullLimits{
	inflated: maxPushPullInflated,
	section:  maxDesiredSection,
	desired:  MaxDesiredStates,
	records:  maxPushPullRecords,
}

// pushPullState is what a peer sent in a push/pull.
type pushPullState struct {
	desired        []release.SignedDesiredState
	desiredRefused int      // desired states past a cap, not decoded
	records        [][]byte // each an encoded app-state record, not yet decoded
	recordsRefused int      // records past a cap, not decoded
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
// only) from nodes that predate app-state records, within lim. Desired
// states and records past their caps are counted in the result, not
// decoded; a state whose desired part or inflated size is over its cap is
// refused whole with an error wrapping errOverCap.
func decodePushPull(msg []byte, lim pushPullLimits) (pushPullState, error) {
	var st pushPullState
	if len(msg) == 0 {
		return st, errors.New("push/pull state is empty")
	}
	switch msg[0] {
	case msgPushPull:
		if int64(len(msg)-1) > lim.section {
			return st, fmt.Errorf("%w: push/pull desired states of %d bytes, over %d", errOverCap, len(msg)-1, lim.section)
		}
		var err error
		if st.desired, st.desiredRefused, err = decodeDesiredList(msg[1:], lim.desired); err != nil {
			return pushPullState{}, fmt.Errorf("decode push/pull state: %w", err)
		}
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
			return pushPullState{}, fmt.Errorf("%w: push/pull state inflates past %d bytes", errOverCap, lim.inflated)
		}
		return pushPullState{}, fmt.Errorf("decode push/pull state: %s: %w", what, err)
	}
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return fail("desired states", err)
	}
	if size > uint64(lim.section) {
		return pushPullState{}, fmt.Errorf("%w: push/pull desired states of %d bytes, over %d", errOverCap, size, lim.section)
	}
	js := make([]byte, size)
	if _, err := io.ReadFull(r, js); err != nil {
		return fail("desired states", err)
	}
	if st.desired, st.desiredRefused, err = decodeDesiredList(js, lim.desired); err != nil {
		return fail("desired states", err)
	}
	count, err := binary.ReadUvarint(r)
	if err != nil {
		return fail("app-state records", err)
	}
	if count > uint64(lim.records) {
		st.recordsRefused = int(min(count-uint64(lim.records), math.MaxInt32))
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
			st.recordsRefused++
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

// decodeDesiredList reads the desired states of a push/pull,
// {"desired":[…]}, decoding at most limit of them. Those past limit, and
// any over MaxDesiredBytes, are counted in refused and skipped unread
// (scanned for their end only): their signatures are never checked.
func decodeDesiredList(js []byte, limit int) (states []release.SignedDesiredState, refused int, err error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := expectDelim(dec, '{'); err != nil {
		return nil, 0, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, err
		}
		if tok != "desired" {
			var skip json.RawMessage // a field of a newer version
			if err := dec.Decode(&skip); err != nil {
				return nil, 0, err
			}
			continue
		}
		if tok, err = dec.Token(); err != nil {
			return nil, 0, err
		}
		if tok == nil {
			continue // null: no states
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return nil, 0, fmt.Errorf("desired states: got %v, want an array", tok)
		}
		for dec.More() {
			if len(states) >= limit {
				// The rest are refused: count them without decoding.
				return states, refused + countElements(js[dec.InputOffset():]), nil
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, 0, err
			}
			if len(raw) > MaxDesiredBytes {
				refused++
				continue
			}
			var sd release.SignedDesiredState
			if err := json.Unmarshal(raw, &sd); err != nil {
				return nil, 0, err
			}
			states = append(states, sd)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return nil, 0, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, 0, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, errors.New("desired states: data after the end")
	}
	return states, refused, nil
}

// countElements counts the elements left in a JSON array, given what follows
// its '[' or one of its elements, up to its closing ']'. It only scans for
// their boundaries, at about a byte a nanosecond: the elements are refused,
// so they are neither decoded nor validated.
func countElements(b []byte) int {
	count, depth := 0, 0
	inString, escaped, valueNext := false, false, true
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case ',':
			if depth == 0 {
				valueNext = true
				continue
			}
		case ']', '}':
			if depth == 0 {
				return count
			}
			depth--
			continue
		}
		if depth == 0 && valueNext {
			count++
			valueNext = false
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
		}
	}
	return count
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("desired states: got %v, want %v", tok, want)
	}
	return nil
}
