package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// parseJoin splits a comma-separated list of host:port addresses, refusing
// malformed ones before anything starts.
func parseJoin(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, a := range strings.Split(item, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if err := seeder.CheckHostPort(a); err != nil {
				return nil, usageErrorf("--join: %w", err)
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// checkAddrFlags refuses a malformed listen address before anything
// starts. It takes flag, address pairs and checks them in that order, so
// the first bad flag on the command line is the one reported.
func checkAddrFlags(flagAddr ...string) error {
	for i := 0; i+1 < len(flagAddr); i += 2 {
		if err := seeder.CheckHostPort(flagAddr[i+1]); err != nil {
			return usageErrorf("%s: %w", flagAddr[i], err)
		}
	}
	return nil
}

// trustFlags are the key pinning flags the agent and the seeder share.
type trustFlags struct {
	release, rollout []string
	threshold        int
}

func (t *trustFlags) add(f *pflag.FlagSet, rolloutUsage string) {
	f.StringSliceVar(&t.release, "trust-release", nil, "public key file(s) of the release keys whose signed manifests are accepted (repeatable, required)")
	f.StringSliceVar(&t.rollout, "trust-rollout", nil, rolloutUsage)
	f.IntVar(&t.threshold, "release-threshold", 1, "how many distinct --trust-release keys must have signed a manifest (k of n)")
}

// load reads the pinned keys into a release.Trust; it does not check the
// roles against each other (Trust.Validate does, in the daemon's New).
func (t *trustFlags) load(cmd string) (release.Trust, error) {
	rel, err := loadTrust("--trust-release", t.release)
	if err != nil {
		return release.Trust{}, err
	}
	roll, err := loadTrust("--trust-rollout", t.rollout)
	if err != nil {
		return release.Trust{}, err
	}
	if t.threshold < 1 || t.threshold > len(rel) {
		return release.Trust{}, usageErrorf("%s: --release-threshold %d: need 1 to %d, the number of --trust-release keys", cmd, t.threshold, len(rel))
	}
	return release.Trust{Release: release.NewKeyring(rel...), Rollout: release.NewKeyring(roll...), ReleaseThreshold: t.threshold}, nil
}

// loadTrust reads the public keys named by a key flag.
func loadTrust(flag string, paths []string) ([]release.PublicKey, error) {
	var keys []release.PublicKey
	for _, p := range paths {
		for _, f := range strings.Split(p, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			k, err := release.LoadPublicKey(f)
			if err != nil {
				return nil, usageErrorf("%s: %w", flag, err)
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// writeAddrFile records a daemon's real listen addresses as key=value lines
// (for scripts and the demo, when ports were chosen by the OS).
func writeAddrFile(path string, kv [][2]string) error {
	if path == "" {
		return nil
	}
	var b strings.Builder
	for _, p := range kv {
		fmt.Fprintf(&b, "%s=%s\n", p[0], p[1])
	}
	tmp := path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--addr-file: %w", err)
	}
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--addr-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("--addr-file: %w", err)
	}
	return nil
}

// byteRate parses a rate such as "50MiB", "2m", "0" into bytes per second.
func byteRate(flag, s string) (int64, error) {
	n, err := parseBytes(s)
	if err != nil || n < 0 {
		return 0, usageErrorf("%s %q: use bytes per second such as 0 (no cap), 500KiB, 20MiB, 1GiB", flag, s)
	}
	return n, nil
}

// parseBytes reads an integer with an optional K/M/G (KiB/MiB/GiB) suffix.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	orig := s
	mult := int64(1)
	upper := strings.ToUpper(s)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			mult = u.m
			s = strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("not a byte count: %q", s)
	}
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, fmt.Errorf("%q is too large: at most %d bytes", orig, int64(math.MaxInt64))
	}
	return n * mult, nil
}

// parseRate reads a rate in bytes per second: a byte count (2MiB, 500K) or
// bits with a decimal unit (1Gbit, 100Mbit), as links are sold.
func parseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range []struct {
		suffix string
		bits   int64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			var n int64
			if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v {
				return 0, fmt.Errorf("not a rate: %q", s)
			}
			return n * u.bits / 8, nil
		}
	}
	return parseBytes(s)
}

// isTerminal reports whether f is a terminal, for progress bars and redraws.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
