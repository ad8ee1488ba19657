package process

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// Ports hands out ports from a configured range (where ${PORT} comes
// from), skipping those our own backends hold and those something else on
// the machine is listening on. It rotates through the range so that a
// restarted backend usually gets a port no stale connection points at.
type Ports struct {
	first, last int

	mu   sync.Mutex
	next int
	used map[int]bool
}

// NewPorts hands out the ports first to last, both included.
func NewPorts(first, last int) *Ports {
	return &Ports{first: first, last: last, next: first, used: make(map[int]bool)}
}

// Acquire returns a port that no backend holds and nothing listens on
// 127.0.0.1, and holds it until Release.
func (p *Ports) Acquire() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	size := p.last - p.first + 1
	for i := 0; i < size; i++ {
		port := p.first + (p.next-p.first+i)%size
		if p.used[port] || !portFree(port) {
			continue
		}
		p.used[port] = true
		p.next = port + 1
		if p.next > p.last {
			p.next = p.first
		}
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d", p.first, p.last)
}

// Release gives port back. Releasing a port not held (0, for a backend
// that needed none) does nothing.
func (p *Ports) Release(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

// portFree reports whether port can be listened on now: another program's
// listener there would take the backend's connections, or make it fail to
// bind.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
