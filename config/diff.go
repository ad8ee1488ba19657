package config

import (
	"reflect"
	"slices"
)

// Diff is what a reload changes: which models come and go, which must be
// restarted to take their new settings, and which top-level settings
// cannot change without restarting hotswap itself.
type Diff struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	// Restart lists the models whose backend must be started again:
	// command, environment, upstream, health path, memory or GPU changed.
	Restart []string `json:"restart"`
	// Changed lists the other models whose settings changed (aliases,
	// parallel, ttl, pinned, timeouts): they apply at once.
	Changed []string `json:"changed"`
	// NeedsRestart names the settings that keep their old values until
	// hotswap restarts (listen, server, ports, max_body, state_file).
	NeedsRestart []string `json:"needs_restart"`
}

// Compare says what going from c to next changes.
func Compare(c, next *Config) Diff {
	d := Diff{Added: []string{}, Removed: []string{}, Restart: []string{}, Changed: []string{}, NeedsRestart: []string{}}
	for _, id := range next.ModelIDs {
		old, ok := c.Models[id]
		switch m := next.Models[id]; {
		case !ok:
			d.Added = append(d.Added, id)
		case old.RestartNeeded(m):
			d.Restart = append(d.Restart, id)
		case !reflect.DeepEqual(old, m):
			d.Changed = append(d.Changed, id)
		}
	}
	for _, id := range c.ModelIDs {
		if _, ok := next.Models[id]; !ok {
			d.Removed = append(d.Removed, id)
		}
	}
	fixed := []struct {
		name      string
		old, next any
	}{
		{"listen", c.Listen, next.Listen},
		{"server", c.Server, next.Server},
		{"ports", c.Ports, next.Ports},
		{"max_body", c.MaxBody, next.MaxBody},
		{"memory.state_file", c.Memory.StateFile, next.Memory.StateFile},
	}
	for _, f := range fixed {
		if !reflect.DeepEqual(f.old, f.next) {
			d.NeedsRestart = append(d.NeedsRestart, f.name)
		}
	}
	return d
}

// RestartNeeded reports whether a backend started as m must be started
// again to run as next: what it was started with, or where it may go,
// changed.
func (m *Model) RestartNeeded(next *Model) bool {
	return !slices.Equal(m.Cmd, next.Cmd) || !slices.Equal(m.Env, next.Env) || m.Proxy != next.Proxy ||
		m.Health != next.Health || m.Memory != next.Memory || m.GPU != next.GPU
}
