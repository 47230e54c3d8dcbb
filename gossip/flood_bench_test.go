package gossip

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// floodStates makes count bogus desired states: small, each of its own app
// (so no two are alike), and claiming keyID, with a signature that cannot
// verify. A trusted key id makes the receiver check each signature, the
// costly case; an untrusted one is refused on the key.
func floodStates(count int, keyID string) []release.SignedDesiredState {
	sig := bytes.Repeat([]byte{0x5a}, 64)
	out := make([]release.SignedDesiredState, count)
	for i := range out {
		payload := fmt.Appendf(nil, `{"app":"flood-%d","seq":%d}`, i, i+1)
		out[i] = release.SignedDesiredState{Envelope: release.Envelope{Payload: payload, KeyID: keyID, Sig: sig}}
	}
	return out
}

// floodPushPull is a push/pull state carrying count bogus desired states
// (floodStates), half claiming the trusted key and half a key nobody
// holds, in the format encodePushPull writes. It writes the JSON itself:
// encoding 100 000 states through encoding/json takes seconds under the
// race detector.
func floodPushPull(tb testing.TB, count int, trusted string) []byte {
	tb.Helper()
	var js bytes.Buffer
	js.WriteString(`{"desired":[`)
	for i, sd := range floodStates(count, "") {
		key := trusted
		if i >= count/2 {
			key = "0123456789abcdef"
		}
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `{"payload":%s,"key":%q,"sig":%q}`, sd.Payload, key, base64.StdEncoding.EncodeToString(sd.Sig))
	}
	js.WriteString(`]}`)
	var buf bytes.Buffer
	buf.WriteByte(msgPushPullFlate)
	fw, err := flate.NewWriter(&buf, flate.BestSpeed)
	if err != nil {
		tb.Fatal(err)
	}
	fw.Write(binary.AppendUvarint(nil, uint64(js.Len())))
	fw.Write(js.Bytes())
	fw.Write(binary.AppendUvarint(nil, 0)) // no app-state records
	if err := fw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// floodSize is the flood of issue 13: one push/pull of 100 000 bogus
// desired states.
const floodSize = 100_000

// floodFitting is how many bogus states fit in 8 MiB of push/pull desired
// states (maxDesiredSection): the costliest flood a receiver still reads.
func floodFitting() int {
	js, _ := json.Marshal(floodStates(1, "0123456789abcdef")[0])
	return (8 << 20) / (len(js) + 10) // flood-<i> and seq grow by up to 9 digits, and a comma
}

// BenchmarkMergeFlood measures what one push/pull carrying bogus desired
// states costs the node that merges it: 100 000 of them (issue 13), and as
// many as fit in the push/pull's bound on desired states.
func BenchmarkMergeFlood(b *testing.B) {
	for _, size := range []struct {
		name  string
		count int
	}{{"100k", floodSize}, {"fitting", floodFitting()}} {
		b.Run(size.name, func(b *testing.B) {
			k := newKey(b)
			n := startNodeLogger(b, testConfig("rx", trustOf(k.Public())), zap.NewNop())
			buf := floodPushPull(b, size.count, k.ID())
			b.ReportMetric(float64(size.count), "states")
			b.ResetTimer()
			for b.Loop() {
				n.mergeRemote(buf)
			}
			b.StopTimer()
			if st := n.Stats(); st.Accepted != 0 {
				b.Fatalf("accepted %d bogus states", st.Accepted)
			}
		})
	}
}
