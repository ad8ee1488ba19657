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
	// hotswap restarts (listen, server, ports, max_body, state_file,
	// endpoint_picker.listen).
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
	was, now := fixed(c), fixed(next)
	for i, f := range was {
		if !reflect.DeepEqual(f.field, now[i].field) {
			d.NeedsRestart = append(d.NeedsRestart, f.name)
		}
	}
	return d
}

// setting is one setting of a Config: its name in the file, and a pointer
// to its field.
type setting struct {
	name  string
	field any
}

// fixed lists c's settings that a reload cannot change: what hotswap's
// listener, server and port range were built with at start.
func fixed(c *Config) []setting {
	return []setting{
		{"listen", &c.Listen},
		{"server", &c.Server},
		{"ports", &c.Ports},
		{"max_body", &c.MaxBody},
		{"memory.state_file", &c.Memory.StateFile},
		{"endpoint_picker.listen", &c.EndpointPicker.Listen},
	}
}

// KeepFixed gives c the values running has for the settings a reload
// cannot change (those Compare names in NeedsRestart).
func (c *Config) KeepFixed(running *Config) {
	from := fixed(running)
	for i, f := range fixed(c) {
		reflect.ValueOf(f.field).Elem().Set(reflect.ValueOf(from[i].field).Elem())
	}
}

// RestartNeeded reports whether a backend started as m must be started
// again to run as next: what it was started with, or where it may go,
// changed.
func (m *Model) RestartNeeded(next *Model) bool {
	return !slices.Equal(m.Cmd, next.Cmd) || !slices.Equal(m.Env, next.Env) || m.Proxy != next.Proxy ||
		m.Health != next.Health || m.Memory != next.Memory || m.GPU != next.GPU
}
