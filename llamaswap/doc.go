// Package llamaswap reads llama-swap's configuration and writes the hotswap
// configuration that does the same: `hotswap import llama-swap FILE`.
//
// Every llama-swap setting ends up somewhere in what it writes: as the
// hotswap key that does the same (ttl in seconds becomes a duration,
// filters become params, setParamsByID's names variants, macros stay
// macros), with a comment where hotswap does it differently; or, where
// hotswap has no place for it (cmdStop, groups, peers, ...), as a comment
// starting "not imported:" that keeps the setting and says what hotswap
// does instead. Nothing is dropped silently.
//
// A file llama-swap would refuse is refused too, with every problem named
// by line and key at once (see Error), and so is a key llama-swap does not
// have, so that a typo is not carried over as nothing.
package llamaswap
