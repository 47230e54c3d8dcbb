package gossip

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/hashicorp/memberlist"

	"github.com/swarmdeploy/swarm/release"
)

// metaLimit is what memberlist lets a node advertise about itself.
const metaLimit = memberlist.MetaMaxSize

// maxTorrentAddr bounds Config.TorrentAddr, so that the node meta always
// fits metaLimit.
const maxTorrentAddr = 256

// wireMeta is what a node advertises in memberlist's node meta: only what is
// small and fixed for the node's lifetime, so the meta never changes after
// Start. Per-app states travel as records of their own (see apps.go).
type wireMeta struct {
	Role    Role   `json:"r,omitempty"`
	Torrent string `json:"t,omitempty"`
	Env     string `json:"e,omitempty"` // empty for the default environment
	// Gen is the generation of the node's app-state records: the wall clock
	// in nanoseconds when it started. Others take records of exactly this
	// generation for it, so a node restarted under the same name replaces
	// its old record even if its clock went back.
	Gen uint64 `json:"g,omitempty"`
	// Key and Sig sign the announcement (announcement) with a rollout key:
	// only a member whose signature verifies against the pinned keyring is
	// taken for a seeder. Agents leave them empty.
	Key string `json:"k,omitempty"`
	Sig []byte `json:"s,omitempty"`
}

// errUnsigned: a member claims a role that needs a signature and has none.
var errUnsigned = errors.New("announcement is not signed")

// announcement is what a signature over a node's meta covers: its name
// (memberlist's, outside the meta), role, torrent address, environment and
// generation, each length-prefixed so that no field can run into the next.
func announcement(name string, w wireMeta) []byte {
	b := make([]byte, 0, 64+len(name)+len(w.Torrent)+len(w.Env))
	for _, f := range []string{name, string(w.Role), w.Torrent, w.Env} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return binary.BigEndian.AppendUint64(b, w.Gen)
}

// verifyAnnouncement checks that name's meta w is signed by a key of ring.
func verifyAnnouncement(name string, w wireMeta, ring release.Keyring) error {
	if w.Key == "" || len(w.Sig) == 0 {
		return errUnsigned
	}
	return release.VerifyAnnouncement(announcement(name, w), w.Key, w.Sig, ring)
}

// checkApps refuses app states that the rest of the cluster could not use.
func checkApps(apps []AppState) error {
	seen := make(map[string]bool, len(apps))
	for _, a := range apps {
		if err := release.ValidateApp(a.App); err != nil {
			return fmt.Errorf("app state: %w", err)
		}
		if seen[a.App] {
			return fmt.Errorf("app state: app %q listed twice", a.App)
		}
		seen[a.App] = true
		if a.Version != "" {
			if err := release.ValidateVersion(a.Version); err != nil {
				return fmt.Errorf("app state %s: %w", a.App, err)
			}
		}
		if _, ok := phaseCode(a.Phase); !ok {
			return fmt.Errorf("app state %s: unknown phase %q", a.App, a.Phase)
		}
		if a.ReleaseID != "" {
			if _, err := release.ParseID(string(a.ReleaseID)); err != nil {
				return fmt.Errorf("app state %s: %w", a.App, err)
			}
		}
	}
	return nil
}

// encodeMeta encodes what node name advertises about itself, signed with
// key when it is not nil.
func encodeMeta(name string, role Role, torrent, env string, gen uint64, key *release.PrivateKey) ([]byte, error) {
	if env == release.DefaultEnv {
		env = ""
	}
	w := wireMeta{Role: role, Torrent: torrent, Env: env, Gen: gen}
	if key != nil {
		w.Key, w.Sig = release.SignAnnouncement(announcement(name, w), key)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode node meta: %w", err)
	}
	if len(b) > metaLimit {
		return nil, fmt.Errorf("encode node meta: %d bytes, over memberlist's %d", len(b), metaLimit)
	}
	return b, nil
}

func decodeMeta(b []byte) (wireMeta, error) {
	var w wireMeta
	if len(b) == 0 {
		return w, nil
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return w, fmt.Errorf("decode node meta: %w", err)
	}
	// Any member can advertise anything: take only what a node of this
	// version could have sent.
	switch w.Role {
	case "", RoleAgent, RoleSeeder:
	default:
		return wireMeta{}, fmt.Errorf("decode node meta: unknown role %q", w.Role)
	}
	if w.Env != "" {
		if err := release.ValidateEnv(w.Env); err != nil {
			return wireMeta{}, fmt.Errorf("decode node meta: %w", err)
		}
	}
	if len(w.Torrent) > maxTorrentAddr {
		return wireMeta{}, fmt.Errorf("decode node meta: torrent address of %d bytes, over %d", len(w.Torrent), maxTorrentAddr)
	}
	return w, nil
}

func permille(p float64) uint16 {
	if math.IsNaN(p) || p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1000
	}
	return uint16(math.Round(p * 1000))
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
