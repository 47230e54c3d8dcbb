// Package seeder is the origin daemon. It keeps the release store (bundles
// and their signed manifests, keyed by release id), accepts publishes over
// its HTTP API, seeds every stored release through package swarm, signs and
// issues desired states through package gossip, and assembles cluster status
// from what the nodes gossip. Its API authenticates every request but
// /healthz with a bearer token or a client certificate (auth.go), and
// Client is its counterpart for the CLI.
package seeder
