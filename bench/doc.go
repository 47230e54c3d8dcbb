// Package bench holds swarm's harness: in-process clusters of a real seeder
// and real agents on 127.0.0.1 (real memberlist, real BitTorrent), which the
// integration tests and the benchmarks share.
package bench
