package swarm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/swarmdeploy/swarm/release"
)

// Defaults applied by Config.Validate.
const (
	DefaultListenAddr         = ":6881"
	DefaultMaxConnsPerTorrent = 50
)

// bundleFile is the bundle's file name inside its release directory.
const bundleFile = "bundle.tar.zst"

// Config configures a Client.
type Config struct {
	// Dir is where bundles live, one directory per release:
	// BundlePath(Dir, id). Required. Start creates it if needed.
	Dir string
	// ListenAddr is the "host:port" the BitTorrent TCP listener binds. Port 0
	// lets the OS pick (see Client.Addr). The host is an IP address or empty:
	// an IPv4 host listens on IPv4 only, an IPv6 host on IPv6 only, an empty
	// host on all addresses of both. Default ":6881".
	ListenAddr string
	// Origin marks this client as the origin (the seeder's copy). Other
	// clients count the bytes they receive from it as origin bytes.
	Origin bool
	// UploadRate caps payload upload in bytes per second (anacrolix's
	// limiter, which counts the chunks it sends; messages around them add
	// well under 1 %); 0 means unlimited.
	UploadRate int64
	// DownloadRate caps every byte read from peer connections, protocol
	// included, in bytes per second, over all of them together; 0 means
	// unlimited. After an idle spell up to 256 KiB may arrive at once.
	DownloadRate int64
	// MaxConnsPerTorrent caps established peer connections per release.
	// Default 50.
	MaxConnsPerTorrent int
	// DisablePEX turns off peer exchange, so a client only talks to the
	// peers it is given (Sources) and those that dial it. By default peers
	// tell each other about more peers.
	DisablePEX bool
	// SharedDir, when set, makes the client keep no bundles of its own: it
	// treats BundlePath(SharedDir, id) as a complete, verified copy of every
	// release, held by another client in the same process (the origin's
	// store). Pieces received from peers are still checked against the
	// infohash, then dropped; pieces this client has are served from the
	// shared copy. Only for benchmarks that run many clients in one process;
	// a node leaves it empty.
	SharedDir string
}

// Validate fills in defaults for zero fields and checks the rest.
func (c *Config) Validate() error {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.MaxConnsPerTorrent == 0 {
		c.MaxConnsPerTorrent = DefaultMaxConnsPerTorrent
	}
	if c.Dir == "" {
		return errors.New("swarm config: dir is required")
	}
	if _, _, err := splitListenAddr(c.ListenAddr); err != nil {
		return fmt.Errorf("swarm config: %w", err)
	}
	if c.UploadRate < 0 || c.DownloadRate < 0 {
		return fmt.Errorf("swarm config: rates must be >= 0 (upload %d, download %d)", c.UploadRate, c.DownloadRate)
	}
	if c.SharedDir != "" && filepath.Clean(c.SharedDir) == filepath.Clean(c.Dir) {
		return errors.New("swarm config: shared dir must not be the client's own dir")
	}
	if c.MaxConnsPerTorrent < 0 {
		return fmt.Errorf("swarm config: max conns per torrent must be > 0, got %d", c.MaxConnsPerTorrent)
	}
	return nil
}

// splitListenAddr parses "host:port" with a numeric port in [0, 65535].
func splitListenAddr(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("listen addr %q: %w", addr, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("listen addr %q: port must be a number from 0 to 65535", addr)
	}
	if _, err := netip.ParseAddr(host); host != "" && err != nil {
		return "", 0, fmt.Errorf("listen addr %q: host must be an IP address or empty", addr)
	}
	return host, port, nil
}

// BundlePath is where the bundle of release id lives under dir.
func BundlePath(dir string, id release.ID) string {
	return filepath.Join(dir, id.Hex(), bundleFile)
}
