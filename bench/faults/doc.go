// Package faults is the fault suite with real processes: a seeder and
// agents, each an OS process in a network namespace of its own with its own
// address and a tc rate cap on its link, so a partition is a link taken
// down and origin egress is the kernel's byte counter. Each scenario
// injects one fault (kill -9 mid-download or mid-hook, a seeder killed and
// restarted, a partition, a full disk, a corrupt peer, churn) into a
// rollout and checks what an operator relies on: every node ends on the
// desired release, no node fetched a verified piece twice, no hook ran
// twice, and the origin sent about one copy.
//
// It needs root (network namespaces, tc, tmpfs) and iproute2; see
// scripts/faults.sh and FAULTS.md.
package faults
