package gossip

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/swarmdeploy/swarm/release"
)

// Message types: the first byte of every message this package sends through
// memberlist, followed by JSON.
const (
	// msgDesired carries one signed desired state as JSON.
	msgDesired byte = 1
	// msgDesiredFlate is msgDesired with the JSON deflated: used only when
	// the plain message does not fit one packet (long app names or versions).
	msgDesiredFlate byte = 2
	// msgPushPull carries every accepted desired state in a push/pull.
	msgPushPull byte = 3
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

// pushPull is the user state exchanged in a push/pull.
type pushPull struct {
	Desired []release.SignedDesiredState `json:"desired"`
}

func encodePushPull(states []release.SignedDesiredState) ([]byte, error) {
	js, err := json.Marshal(pushPull{Desired: states})
	if err != nil {
		return nil, fmt.Errorf("encode push/pull state: %w", err)
	}
	return append([]byte{msgPushPull}, js...), nil
}

func decodePushPull(msg []byte) ([]release.SignedDesiredState, error) {
	if len(msg) == 0 || msg[0] != msgPushPull {
		return nil, errors.New("push/pull state has an unknown type")
	}
	var pp pushPull
	if err := json.Unmarshal(msg[1:], &pp); err != nil {
		return nil, fmt.Errorf("decode push/pull state: %w", err)
	}
	return pp.Desired, nil
}
