package installer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exe, plain := write("hook", 0o755), write("plain", 0o644)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"minimal", Config{Dir: dir}, ""},
		{"hook and health check", Config{Dir: dir, Hook: exe, HealthCheck: exe, Keep: 5, HookTimeout: time.Second}, ""},
		{"no dir", Config{}, "dir is empty"},
		{"hook not executable", Config{Dir: dir, Hook: plain}, "hook " + plain + ": not executable; chmod +x it"},
		{"health check not executable", Config{Dir: dir, HealthCheck: plain}, "health check " + plain + ": not executable; chmod +x it"},
		{"hook missing", Config{Dir: dir, Hook: filepath.Join(dir, "nope")}, "does not exist"},
		{"hook is a directory", Config{Dir: dir, Hook: dir}, "not a regular file"},
		{"negative hook timeout", Config{Dir: dir, HookTimeout: -time.Second}, "hook timeout -1s is negative"},
		{"negative health timeout", Config{Dir: dir, HealthTimeout: -1}, "health timeout"},
		{"negative keep", Config{Dir: dir, Keep: -1}, "keep -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want ErrConfig and %q", err, tc.want)
			}
		})
	}
}

func TestNewDefaultsAndNoIO(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "not-yet")
	inst, err := New(Config{Dir: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := inst.cfg; c.HookTimeout != DefaultHookTimeout || c.HealthTimeout != DefaultHealthTimeout ||
		c.Keep != DefaultKeep || c.KillGrace != DefaultKillGrace {
		t.Errorf("defaults not applied: %+v", c)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("New touched the disk: %v", err)
	}
	if _, err := New(Config{}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("New with no dir = %v; want ErrConfig", err)
	}
	// Current on an app never installed is not an error and creates nothing.
	if _, ok, err := inst.Current("web"); ok || err != nil {
		t.Errorf("Current on an empty root = %v, %v", ok, err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("Current created the root: %v", err)
	}
}
