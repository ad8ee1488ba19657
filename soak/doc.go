// Package soak holds a chaos soak of hotswap: TestSoak runs the real
// hotswap binary in front of real mock backends with bad habits (slow
// streams, crashes, a backend that ignores SIGTERM, one that never becomes
// healthy, one that exits on a bad flag, a TTL, a slow loader) under a
// memory budget that cannot hold them all, sends it concurrent traffic
// with clients that hang up or read slowly while an operator loads,
// unloads, switches modes and reloads the configuration, and checks
// hotswap's invariants continuously while it runs: every request is
// answered once, the budget is never exceeded, no backend outlives its
// model, hotswap returns to its idle footprint, and /health keeps
// answering. SOAK sets the duration (default 15s); `make soak` runs it for
// a minute. RELIABILITY.md, at the repository's root, describes it.
package soak
