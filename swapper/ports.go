package swapper

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// ports hands out ports from a configured range, skipping those our own
// backends hold and those something else on the machine is listening on.
// It rotates through the range so that a restarted backend usually gets a
// port no stale connection points at.
type ports struct {
	first, last int

	mu   sync.Mutex
	next int
	used map[int]bool
}

func newPorts(first, last int) *ports {
	return &ports{first: first, last: last, next: first, used: make(map[int]bool)}
}

func (p *ports) acquire() (int, error) {
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

func (p *ports) release(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
