package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// peerTracker is a BitTorrent HTTP tracker (BEP 3, compact answers, BEP
// 23) that names one fixed peer to whoever announces. aria2c does not use
// the x.pe peer hints of a magnet URI, so the procs bench adds this
// tracker's announce URL to the magnet instead, naming the seeder.
type peerTracker struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startPeerTracker serves, on 127.0.0.1 and a port the OS chooses, a
// tracker whose only peer is peer (an IPv4 host:port).
func startPeerTracker(peer string) (*peerTracker, error) {
	ap, err := netip.ParseAddrPort(peer)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("tracker: peer %q is no IPv4 host:port", peer)
	}
	compact := ap.Addr().AsSlice()
	compact = binary.BigEndian.AppendUint16(compact, ap.Port())
	body := fmt.Sprintf("d8:completei1e10:incompletei0e8:intervali60e5:peers%d:%se", len(compact), compact)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /announce", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(body))
	})
	t := &peerTracker{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		_ = t.srv.Serve(ln) // ends with http.ErrServerClosed
	}()
	return t, nil
}

// announceURL is the tracker's announce URL.
func (t *peerTracker) announceURL() string { return "http://" + t.ln.Addr().String() + "/announce" }

// withTracker returns magnet with t's announce URL added as a tr parameter.
func (t *peerTracker) withTracker(magnet string) string {
	return magnet + "&tr=" + url.QueryEscape(t.announceURL())
}

// Close stops the tracker and waits for it. Safe to call twice.
func (t *peerTracker) Close() error {
	err := t.srv.Close()
	<-t.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
