package swapper

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnknownModel is returned for a model id the swapper was not given.
var ErrUnknownModel = errors.New("unknown model")

// ErrPlanPending is returned by Evictions while another model's start has
// not been placed yet: until it has, what it will take is unknown.
var ErrPlanPending = errors.New("another start is being planned")

// ErrClosed is returned once the swapper is shutting down.
var ErrClosed = errors.New("hotswap is shutting down")

// StartError says why a backend could not be started, with the last lines
// it wrote, which usually hold the real reason (a missing file, out of
// memory).
type StartError struct {
	Model string
	Err   error
	// Output is the backend's last output lines, oldest first.
	Output []string
	// OutOfMemory says the backend exited for lack of memory, by what it
	// wrote or how it died.
	OutOfMemory bool
	// RetryAt is when the swapper will try this model again.
	RetryAt time.Time
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "backend for model %q failed to start: %v", e.Model, e.Err)
	if len(e.Output) > 0 {
		b.WriteString("; last output: ")
		b.WriteString(strings.Join(e.Output, " | "))
	}
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

// BackoffError refuses a model whose last start failed until RetryAt,
// rather than restarting a broken backend on every request.
type BackoffError struct {
	Model   string
	RetryAt time.Time
	Last    *StartError
}

func (e *BackoffError) Error() string {
	return fmt.Sprintf("model %q is backing off after a failed start (retry in %s): %v",
		e.Model, time.Until(e.RetryAt).Round(time.Second), e.Last.Err)
}

func (e *BackoffError) Unwrap() error { return e.Last }
