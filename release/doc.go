// Package release holds swarm's vocabulary: the release id, the signed manifest
// that describes one bundle, the signed desired state that says which release an
// app should run, the ed25519 keys that sign them, and the deterministic bundle
// format (tar + zstd) with the rules that make unpacking it safe.
//
// It does no I/O beyond the readers, writers and file systems it is handed, so
// every other package can share it without pulling in a network or a disk layout.
package release
