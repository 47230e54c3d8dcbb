// Package installer turns a verified release bundle into the running release of
// an app on one node: it unpacks the bundle beside the releases already there,
// runs the operator's local hook, switches the app's "current" symlink
// atomically, runs the health check and, when anything fails, leaves (or puts)
// the previous release back in place. It keeps the last few releases so that
// rollback needs no download, and removes older ones.
//
// # Layout
//
// Under Config.Dir:
//
//	releases/<app>/<version>-<short id>/             one unpacked release
//	releases/<app>/current -> <version>-<short id>   relative symlink: what runs
//	releases/<app>/state.json                         current and previous manifests
//	releases/<app>/.meta/<version>-<short id>.json    each release's manifest
//	locks/<app>.hook.lock                             flocked while a hook may run
//	logs/<app>/<version>-<short id>.hook.log          hook and health check output
//
// Names starting with ".tmp-", and symlinks named "current.tmp-*", are work
// in progress; they are removed the first time an app is used after a start.
//
// # Install
//
// Install unpacks into releases/<app>/.tmp-<dir>-<random>, syncs the tree,
// records the manifest in .meta and renames the tree into place. It runs the
// hook as [Hook, "install"] in the release directory, switches current, and
// runs the health check as [HealthCheck, "health"]. A failed unpack or hook
// changes nothing but leaving the hook log; a failed health check switches
// back to the release that was current, or, on a first install, to no current
// release at all (current is removed: nothing that failed its check stays
// active). Either way the failed release directory is removed. An unpack
// stops soon after Install's ctx ends (release.Unpack checks it on every
// read) and removes its temporary tree.
//
// # Hook runs
//
// Hook and health check get a clean environment, not the agent's: PATH
// (HookPath), SWARM_APP, SWARM_VERSION, SWARM_RELEASE_ID, SWARM_RELEASE_DIR
// and SWARM_PREVIOUS_DIR (absolute; empty when there is no previous
// release), and only those variables of the agent's environment that
// Config.HookEnv names (HookEnvironment documents each). Their output is
// appended to the release's hook log under a header and a footer line per
// run, at most Config.LogCap bytes (1 MiB) per run; the rest is discarded
// and one line says how much.
//
// Each run goes through a shim: the running executable started again as
// [exe, ShimCommand, …] (shim.go), a child subreaper that sees every
// process the run starts, including those that leave its process group
// (setsid, double forks, daemons). At the timeout, or when ctx ends, the
// shim gets SIGTERM and passes it to every one of them; Config.KillGrace
// later whatever is left gets SIGKILL. A run that fails in any way has its
// processes stopped the same way; a hook that succeeds may leave processes
// running on purpose (it may start the service). Runs for one app never
// overlap, even across a crash of the process: Install and Rollback hold
// the app's hook lock, and so does each of their shims, which also gets
// SIGTERM when the process dies; a later Install or Rollback kills an
// orphaned run's tree before it goes on (hooklock.go). A program that uses an
// Installer with a hook calls MaybeRunShim first in main (cmd/swarm does)
// or TestMain.
//
// # Rollback
//
// When an older release becomes current again (Rollback, or a failed health
// check), the hook runs as [Hook, "rollback"] in that release's directory,
// after the symlink points at it, so that the hook can restart the service on
// the old code. Hooks should exit 0 for verbs they do not use. Rollback does
// not run the health check: the release was healthy when it was last active,
// and there would be nothing safer to fall back to.
//
// # Crash safety
//
// The current symlink is the truth about what runs. Every switch is written
// ahead: state.json first records the switch it is about to make (a pending
// current and previous), then a new symlink is renamed over "current" and the
// directory is synced, then state.json is rewritten without the pending
// record. Every file write is tmp + fsync + rename + fsync of the directory,
// and an unpacked tree is synced before it is renamed into place. Loading an
// app compares the symlink with state.json:
//
//   - the symlink names state's current: state is right; a pending switch that
//     never happened is dropped;
//   - the symlink names the pending current: the switch happened; the pending
//     record becomes the state;
//   - anything else (an operator moved the symlink, state.json was lost or
//     garbled): the symlink wins; its manifest is read from .meta and the
//     release state called current becomes previous. A symlink to a
//     directory that is gone or has no manifest record counts as no current
//     release; loading never moves the symlink itself.
//
// A previous release whose directory is gone is forgotten. A release that
// became current but whose health check had not passed when the process
// died stays marked unchecked in state.json: installing it again runs the
// check (and switches back if it fails) instead of reporting it already
// current.
package installer
