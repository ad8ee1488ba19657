package swapper

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnknownModel is returned for a model id the swapper was not given.
var ErrUnknownModel = errors.New("unknown model")

// ErrClosed is returned once the swapper is shutting down.
var ErrClosed = errors.New("hotswap is shutting down")

// ErrUnloaded is what a start called off, or requests cut, by an
// operator's unload are told.
var ErrUnloaded = errors.New("the model was unloaded by an operator")

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
		e.Model, time.Until(e.RetryAt).Round(time.Second), e.Last)
}

func (e *BackoffError) Unwrap() error { return e.Last }

// ErrDrainTimeout is wrapped by *DrainTimeoutError.
var ErrDrainTimeout = errors.New("drain timeout passed")

// DrainTimeoutError is why requests still in flight on a backend that had
// to leave (to make room, for its ttl) were cut: they ran past the drain
// timeout.
type DrainTimeoutError struct {
	Model   string
	Timeout time.Duration
	Reason  string
}

func (e *DrainTimeoutError) Error() string {
	return fmt.Sprintf("model %q was stopped under this request (%s) once the drain timeout (%s) had passed",
		e.Model, e.Reason, e.Timeout)
}

func (e *DrainTimeoutError) Unwrap() error { return ErrDrainTimeout }
