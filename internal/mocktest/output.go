package mocktest

import (
	"strings"
	"sync"
)

// Output collects what a process writes (its stdout and stderr, set to
// it), which the goroutines copying them write while a test reads it.
type Output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Tail is the last n lines of what was written.
func (o *Output) Tail(n int) string {
	lines := strings.Split(o.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
