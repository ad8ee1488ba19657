package mocktest

import (
	"sync/atomic"

	"github.com/hotswap/hotswap/swapper"
)

// Starter starts processes as the swapper does and counts the starts: each
// one is a backend load, so tests count swaps with it.
type Starter struct {
	swapper.ExecStarter
	n atomic.Int64
}

// Start implements swapper.Starter.
func (s *Starter) Start(spec swapper.ProcessSpec) (swapper.Process, error) {
	s.n.Add(1)
	return s.ExecStarter.Start(spec)
}

// Starts is how many processes it has started.
func (s *Starter) Starts() int64 { return s.n.Load() }
