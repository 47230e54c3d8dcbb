package installer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultHookTimeout   = 5 * time.Minute
	DefaultHealthTimeout = time.Minute
	DefaultKeep          = 3
	DefaultKillGrace     = 5 * time.Second
	// DefaultLogCap is how much output of one hook or health check run is
	// kept in its log; the rest is discarded and counted in one line.
	DefaultLogCap = 1 << 20
)

// ErrConfig reports a Config that cannot work; the message says which field
// and what to do.
var ErrConfig = errors.New("installer config")

// Config says where releases live and how they are activated on this node.
type Config struct {
	// Dir is the installer's root. Releases live in
	// Dir/releases/<app>/<version>-<short id>/ and the active one is named by
	// the relative symlink Dir/releases/<app>/current. Hook logs go to
	// Dir/logs/<app>/, and the per-app hook locks to Dir/locks/. A relative
	// Dir is made absolute by New.
	Dir string
	// Hook, when set, is an executable run as [Hook, "install"] in the new
	// release's directory before it becomes current, and as [Hook, "rollback"]
	// when an older release becomes current again. It is executed directly,
	// never through a shell.
	Hook string
	// HookTimeout bounds one hook run; default 5m.
	HookTimeout time.Duration
	// HealthCheck, when set, is an executable run as [HealthCheck, "health"]
	// in the new release's directory after it became current. A non-zero exit
	// puts the previous release back.
	HealthCheck string
	// HealthTimeout bounds one health check run; default 1m.
	HealthTimeout time.Duration
	// Keep is how many release directories to keep per app, default 3. The
	// current and the previous release are never removed, so values below 2
	// keep 2.
	Keep int
	// KillGrace is how long the processes of a hook or health check run
	// that failed, timed out or was cancelled get between SIGTERM and
	// SIGKILL; default 5s.
	KillGrace time.Duration
	// OpenBundle opens a bundle file for unpacking; nil means os.Open.
	// Tests use it to make an unpack slow; a node leaves it nil.
	OpenBundle func(path string) (io.ReadCloser, error)
	// HookEnv names the variables of this process's environment that hooks
	// and health checks also get; everything else stays out of their
	// environment (see HookEnvironment). A name that is not set here is
	// not passed. PATH and SWARM_* names are refused: swarm sets those.
	HookEnv []string
	// LogCap is how many bytes of output one hook or health check run may
	// write to its log; beyond it output is discarded and one line says how
	// much was dropped. Default 1 MiB (DefaultLogCap).
	LogCap int64
	// Shim is the program each hook and health check runs under, as
	// [Shim, ShimCommand, ...]: its main must hand that argument to
	// ShimMain (see MaybeRunShim). Default: this process's own executable,
	// through /proc/self/exe, so the shim is always the running build.
	Shim string
}

// Validate checks the fields and that the hook and health check, if set,
// are executable files. Call it at startup, so that a typo fails there and
// not on the first install across a fleet.
func (c *Config) Validate() error {
	if err := c.validateFields(); err != nil {
		return err
	}
	if err := checkExecutable("hook", c.Hook); err != nil {
		return err
	}
	if err := checkExecutable("hook shim", c.Shim); err != nil {
		return err
	}
	return checkExecutable("health check", c.HealthCheck)
}

// validateFields is the part of Validate that does no I/O; New runs it.
func (c *Config) validateFields() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: dir is empty; set the directory that holds releases", ErrConfig)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"hook timeout", c.HookTimeout}, {"health timeout", c.HealthTimeout}, {"kill grace", c.KillGrace}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v is negative; use 0 for the default", ErrConfig, d.name, d.v)
		}
	}
	if c.Keep < 0 {
		return fmt.Errorf("%w: keep %d is negative; use 0 for the default of %d", ErrConfig, c.Keep, DefaultKeep)
	}
	if c.LogCap < 0 {
		return fmt.Errorf("%w: log cap %d is negative; use 0 for the default of %d", ErrConfig, c.LogCap, DefaultLogCap)
	}
	if err := CheckHookEnv(c.HookEnv); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func checkExecutable(what, path string) error {
	if path == "" {
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s %s: does not exist", ErrConfig, what, path)
	case err != nil:
		return fmt.Errorf("%w: %s %s: %w", ErrConfig, what, path, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%w: %s %s: not a regular file", ErrConfig, what, path)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%w: %s %s: not executable; chmod +x it", ErrConfig, what, path)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.HookTimeout == 0 {
		c.HookTimeout = DefaultHookTimeout
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.Keep == 0 {
		c.Keep = DefaultKeep
	}
	if c.Keep < 2 {
		c.Keep = 2
	}
	if c.KillGrace == 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.LogCap == 0 {
		c.LogCap = DefaultLogCap
	}
	if c.Shim == "" {
		c.Shim = selfExe
	}
	return c
}
