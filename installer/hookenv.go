package installer

import (
	"fmt"
	"os"
	"strings"

	"github.com/swarmdeploy/swarm/release"
)

// HookPath is the PATH every hook and health check gets, whatever the
// agent's own PATH is: the usual system directories, so that a hook finds
// the same tools on every node.
const HookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HookEnvironment returns the whole environment of a hook or health check
// run for release m in dir, with prevDir the previous release's directory
// ("" when there is none), and names the variables of this process's
// environment that pass through (Config.HookEnv; unset ones are left out).
//
// Nothing else of the agent's environment reaches a hook: the agent may hold
// credentials (cloud keys, tokens) that a hook, or whatever a release ships
// for its hook to run, has no business seeing. HOME and LANG are left out
// too: HOME leads tools to the agent user's credential files (~/.aws,
// ~/.netrc, ~/.docker), and without LANG output is in the C locale on every
// node. Pass either with Config.HookEnv when a hook needs it.
//
//	PATH                HookPath
//	SWARM_APP           the app's name
//	SWARM_VERSION       the release's version
//	SWARM_RELEASE_ID    the release id, sha256:<hex>
//	SWARM_RELEASE_DIR   the release's absolute directory (also the working directory)
//	SWARM_PREVIOUS_DIR  the absolute directory of the release that was current
//	                    before, or of the one being left on rollback; "" for none
func HookEnvironment(m release.Manifest, dir, prevDir string, names []string) []string {
	env := []string{
		"PATH=" + HookPath,
		"SWARM_APP=" + m.App,
		"SWARM_VERSION=" + m.Version,
		"SWARM_RELEASE_ID=" + string(m.ReleaseID),
		"SWARM_RELEASE_DIR=" + dir,
		"SWARM_PREVIOUS_DIR=" + prevDir,
	}
	for _, name := range names {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// CheckHookEnv checks the names given to pass through to hooks: each must be
// a plain variable name, not PATH nor SWARM_*, and not given twice.
func CheckHookEnv(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		switch {
		case !isEnvName(name):
			return fmt.Errorf("hook env %q: not a variable name; use letters, digits and _, e.g. HTTPS_PROXY", name)
		case name == "PATH":
			return fmt.Errorf("hook env PATH: hooks get the fixed PATH %s; set PATH inside the hook to change it", HookPath)
		case strings.HasPrefix(name, "SWARM_"):
			return fmt.Errorf("hook env %s: SWARM_* variables are set by swarm for each run", name)
		case seen[name]:
			return fmt.Errorf("hook env %s: given twice", name)
		}
		seen[name] = true
	}
	return nil
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
