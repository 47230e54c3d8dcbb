// Package swarm moves release bundles between nodes over BitTorrent.
//
// It owns anacrolix/torrent and keeps it behind a small API: seed a bundle
// that is already stored, fetch one by its signed manifest from the peers the
// caller names (origins and other nodes), add peers as gossip learns of them,
// and report progress and byte counters split by source (origin or peer). It
// applies the upload and download rate limits and the connection limit, keeps
// partial downloads as ".part" files so a restarted fetch resumes, and checks
// every piece against the manifest's infohash and the whole bundle against its
// release id before calling a fetch done.
//
// Bundles live at BundlePath(dir, id). For benchmarks that run hundreds of
// clients in one process, Config.SharedDir makes a client keep no copy of
// its own: it reads the one verified copy another client holds and keeps
// only the pieces in flight in memory, still hashing every piece it receives.
// No anacrolix type appears in this package's exported API.
package swarm
