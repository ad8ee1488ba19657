package mocktest

import (
	"sync/atomic"

	"github.com/hotswap/hotswap/process"
)

// Starter starts processes as the swapper does and counts the starts: each
// one is a backend load, so tests count swaps with it.
type Starter struct {
	process.ExecStarter
	n atomic.Int64
}

// Start implements process.Starter.
func (s *Starter) Start(spec process.Spec) (process.Process, error) {
	s.n.Add(1)
	return s.ExecStarter.Start(spec)
}

// Starts is how many processes it has started.
func (s *Starter) Starts() int64 { return s.n.Load() }
