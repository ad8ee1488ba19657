package swapper

import (
	"errors"

	"github.com/hotswap/hotswap/probe"
)

// Why a backend exited while it was starting decides what comes next. Lack
// of memory next to other models (process.OutOfMemory) is worth stopping
// the idle ones and trying once more. Anything else (a bad flag, a missing
// file, a bug) fails the same way again, and stopping healthy models for it
// would only cost their users a cold start.

// failCause names why a start failed, in a word, for metrics and events.
func failCause(err error) string {
	var se *StartError
	var ie *InsufficientMemoryError
	switch {
	case errors.As(err, &ie):
		return "memory_not_back"
	case errors.As(err, &se) && se.OutOfMemory:
		return "out_of_memory"
	case errors.Is(err, probe.ErrExited):
		return "exited"
	case errors.Is(err, probe.ErrNotReady):
		return "not_healthy"
	}
	return "not_started"
}
