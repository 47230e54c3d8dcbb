package gossip

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/hashicorp/memberlist"

	"github.com/swarmdeploy/swarm/release"
)

// metaLimit is what memberlist lets a node advertise about itself.
const metaLimit = memberlist.MetaMaxSize

// wireMeta is a node's state as carried in memberlist's node meta: compact
// JSON with short keys, because the whole of it must fit in 512 bytes.
type wireMeta struct {
	Role    Role      `json:"r,omitempty"`
	Torrent string    `json:"t,omitempty"`
	Env     string    `json:"e,omitempty"` // empty for the default environment
	Apps    []wireApp `json:"a,omitempty"`
}

type wireApp struct {
	App     string `json:"n"`
	Version string `json:"v,omitempty"`
	// ID is the release id's sha256 digest in unpadded base64url: 43 bytes
	// instead of the 71 of "sha256:<hex>".
	ID       string `json:"i,omitempty"`
	Phase    Phase  `json:"p,omitempty"`
	Healthy  bool   `json:"h,omitempty"`
	Progress uint16 `json:"g,omitempty"` // thousandths
	Rate     uint32 `json:"r,omitempty"` // KiB/s
	Error    string `json:"e,omitempty"`
}

// errorCaps are the successive limits put on Error strings until the state
// fits; the last one drops them.
var errorCaps = [...]int{200, 100, 48, 16, 0}

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
		if !a.Phase.known() {
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

// encodeMeta encodes a node's own state, truncating error strings as needed;
// it fails with ErrMetaTooLarge if even without them the state does not fit.
func encodeMeta(role Role, torrent, env string, apps []AppState) ([]byte, error) {
	if env == release.DefaultEnv {
		env = ""
	}
	w := wireMeta{Role: role, Torrent: torrent, Env: env, Apps: make([]wireApp, len(apps))}
	for i, a := range apps {
		w.Apps[i] = wireApp{
			App:      a.App,
			Version:  a.Version,
			ID:       encodeID(a.ReleaseID),
			Phase:    a.Phase,
			Healthy:  a.Healthy,
			Progress: permille(a.Progress),
			Rate:     uint32(min(max(a.Rate, 0)>>10, math.MaxUint32)),
		}
	}
	var b []byte
	for _, limit := range errorCaps {
		for i, a := range apps {
			w.Apps[i].Error = truncate(a.Error, limit)
		}
		var err error
		if b, err = json.Marshal(w); err != nil {
			return nil, fmt.Errorf("encode node state: %w", err)
		}
		if len(b) <= metaLimit {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %d apps take %d bytes, the limit is %d", ErrMetaTooLarge, len(apps), len(b), metaLimit)
}

func decodeMeta(b []byte) (wireMeta, []AppState, error) {
	var w wireMeta
	if len(b) == 0 {
		return w, nil, nil
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return w, nil, fmt.Errorf("decode node state: %w", err)
	}
	apps := make([]AppState, len(w.Apps))
	for i, a := range w.Apps {
		apps[i] = AppState{
			App:       a.App,
			Version:   a.Version,
			ReleaseID: decodeID(a.ID),
			Phase:     a.Phase,
			Healthy:   a.Healthy,
			Progress:  float64(min(a.Progress, 1000)) / 1000,
			Rate:      int64(a.Rate) << 10,
			Error:     a.Error,
		}
	}
	return w, apps, nil
}

func encodeID(id release.ID) string {
	if id == "" {
		return ""
	}
	b, err := hex.DecodeString(id.Hex())
	if err != nil {
		return string(id) // checked by checkApps; kept verbatim just in case
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeID(s string) release.ID {
	if s == "" {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return release.ID(s)
	}
	return release.ID(release.IDPrefix + hex.EncodeToString(b))
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
