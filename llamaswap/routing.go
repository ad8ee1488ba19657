package llamaswap

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// llama-swap's groups and matrix say by hand which models may run
// together. hotswap has no such sets: it keeps as many models loaded as
// memory allows, measures what each backend uses, and evicts idle ones
// when a model needs room. So the sets become comments, and each model a
// memory line to fill in; a persistent group (never unloaded by others)
// becomes pinned models.

// readRouting reads groups or the matrix, from routing.router or from the
// older top-level keys, and notes on each model what they said of it.
func (c *converter) readRouting() {
	var groups, matrix *entry
	use := ""
	if e, ok := c.top["groups"]; ok {
		groups = &e
	}
	if e, ok := c.top["matrix"]; ok {
		matrix = &e
	}
	if e, ok := c.top["routing"]; ok {
		f, _ := c.p.fields(e.v, e.line(), e.path, "scheduler", "router")
		if se, ok := f["scheduler"]; ok {
			sf, _ := c.p.fields(se.v, se.line(), se.path, "use", "settings")
			if u, ok := sf["use"]; ok {
				if s, _ := c.topString(u); s != "fifo" {
					c.p.addf(u.line(), u.path, "unknown scheduler %q (llama-swap's only one is fifo)", s)
				}
			}
			if st, ok := sf["settings"]; ok {
				ff, _ := c.p.fields(st.v, st.line(), st.path, "fifo")
				if fe, ok := ff["fifo"]; ok {
					c.p.fields(fe.v, fe.line(), fe.path, "priority")
				}
			}
		}
		if re, ok := f["router"]; ok {
			rf, _ := c.p.fields(re.v, re.line(), re.path, "use", "settings")
			if u, ok := rf["use"]; ok {
				use, _ = c.topString(u)
				if use != "group" && use != "matrix" {
					c.p.addf(u.line(), u.path, "unknown router %q (llama-swap's are group and matrix)", use)
				}
			}
			if (groups != nil || matrix != nil) && len(rf) > 0 {
				c.p.addf(re.line(), re.path, "llama-swap refuses both the top-level groups or matrix and routing.router: keep one")
				return
			}
			if st, ok := rf["settings"]; ok {
				sf, _ := c.p.fields(st.v, st.line(), st.path, "groups", "matrix")
				if g, ok := sf["groups"]; ok && use != "matrix" {
					groups = &g
				}
				if mx, ok := sf["matrix"]; ok && use == "matrix" {
					matrix = &mx
				} else if use == "matrix" {
					c.p.addf(re.line(), re.path, "use is matrix but settings.matrix is not set")
				}
			}
		}
	}
	switch {
	case groups != nil && matrix != nil && use == "":
		c.p.addf(matrix.line(), matrix.path, "llama-swap refuses both groups and a matrix: keep one")
	case matrix != nil:
		c.readMatrix(*matrix)
	case groups != nil:
		c.readGroups(*groups)
	}
	for _, m := range c.models {
		if m.routing == "" {
			if matrix != nil {
				m.routing = "llama-swap's matrix sets held it nowhere: it ran alone"
			} else {
				m.routing = "llama-swap ran it alone (its default group: swap, exclusive)"
			}
		}
	}
}

func (c *converter) readGroups(e entry) {
	member := map[string]string{}
	for _, g := range c.p.entries(e.v, e.line(), e.path) {
		f, _ := c.p.fields(g.v, g.line(), g.path, "swap", "exclusive", "persistent", "members")
		flag := func(key string, def bool) bool {
			if fe, ok := f[key]; ok {
				if v, ok := c.boolOf(fe, c.fileScope()); ok {
					return v
				}
			}
			return def
		}
		swap, exclusive, persistent := flag("swap", true), flag("exclusive", true), flag("persistent", false)
		me, ok := f["members"]
		if !ok {
			continue
		}
		items, _ := c.stringList(me)
		for i, n := range items {
			id := n.Value
			if first, dup := member[id]; dup {
				c.p.addf(n.Line, index(me.path, i), "model %q is already in group %q: llama-swap refuses a model in two groups", id, first)
				continue
			}
			member[id] = g.key
			m := c.byName[id]
			if m == nil || m.id != id {
				continue // llama-swap does not check members; neither does the import
			}
			how := "one member at a time"
			if !swap {
				how = "its members together"
			}
			others := "unloading the other groups"
			if !exclusive {
				others = "leaving the other groups loaded"
			}
			m.routing = fmt.Sprintf("llama-swap's group %q ran %s, %s", g.key, how, others)
			if persistent {
				m.persistent = g.key
			}
		}
	}
}

// matrixToken splits a matrix set's expression into its names.
var matrixToken = regexp.MustCompile(`[^\s&|()]+`)

func (c *converter) readMatrix(e entry) {
	f, _ := c.p.fields(e.v, e.line(), e.path, "vars", "evict_costs", "sets")
	vars := map[string]string{}
	if ve, ok := f["vars"]; ok {
		for _, v := range c.p.entries(ve.v, ve.line(), ve.path) {
			if v.v.Kind == yaml.ScalarNode {
				vars[v.key] = v.v.Value
			}
		}
	}
	if ce, ok := f["evict_costs"]; ok {
		c.p.entries(ce.v, ce.line(), ce.path)
	}
	se, ok := f["sets"]
	if !ok {
		return
	}
	sets := c.p.entries(se.v, se.line(), se.path)
	dsl := map[string]string{}
	for _, s := range sets {
		if s.v.Kind != yaml.ScalarNode {
			c.p.addf(s.line(), s.path, "must be an expression, got %s", describe(s.v))
			continue
		}
		dsl[s.key] = s.v.Value
	}
	var members func(name string, seen map[string]bool) []string
	members = func(name string, seen map[string]bool) []string {
		if seen[name] {
			return nil
		}
		seen[name] = true
		var out []string
		for _, t := range matrixToken.FindAllString(dsl[name], -1) {
			if ref, ok := strings.CutPrefix(t, "+"); ok {
				out = append(out, members(ref, seen)...)
				continue
			}
			if v, ok := vars[t]; ok {
				t = v
			}
			out = append(out, t)
		}
		return out
	}
	in := map[*model][]string{}
	for _, s := range sets {
		for _, id := range members(s.key, map[string]bool{}) {
			if m := c.byName[id]; m != nil && m.id == id && !contains(in[m], s.key) {
				in[m] = append(in[m], s.key)
			}
		}
	}
	for m, names := range in {
		m.routing = "llama-swap's matrix sets " + strings.Join(names, ", ") + " held it"
	}
}

// readPreload reads hooks.on_startup.preload: each name (an id, an alias
// or a setParamsByID name) starts its model with hotswap.
func (c *converter) readPreload() {
	e, ok := c.top["hooks"]
	if !ok {
		return
	}
	f, _ := c.p.fields(e.v, e.line(), e.path, "on_startup")
	se, ok := f["on_startup"]
	if !ok {
		return
	}
	sf, _ := c.p.fields(se.v, se.line(), se.path, "preload")
	pe, ok := sf["preload"]
	if !ok {
		return
	}
	items, _ := c.stringList(pe)
	for _, n := range items {
		if m := c.byName[strings.TrimSpace(n.Value)]; m != nil {
			m.preload = true
		}
	}
}

// hooksOut writes hooks as a comment saying which models preload.
func (c *converter) hooksOut(e entry) *out {
	var loaded, unknown []string
	if pe := c.preloadEntry(); pe != nil {
		items, _ := c.stringList(*pe)
		for _, n := range items {
			name := strings.TrimSpace(n.Value)
			switch m := c.byName[name]; {
			case name == "":
			case m != nil:
				loaded = append(loaded, m.id)
			default:
				unknown = append(unknown, name)
			}
		}
	}
	why := "hotswap's preload is a model's own setting"
	if len(loaded) > 0 {
		why += ": preload: true is set on " + strings.Join(loaded, ", ")
	}
	if len(unknown) > 0 {
		why += "; no model is called " + strings.Join(unknown, ", ") + " (llama-swap skipped it too)"
	}
	return c.dropped(e, why)
}

func (c *converter) preloadEntry() *entry {
	var p problems // read again without reporting twice
	f, _ := p.fields(c.top["hooks"].v, 0, "hooks", "on_startup")
	se, ok := f["on_startup"]
	if !ok {
		return nil
	}
	sf, _ := p.fields(se.v, 0, se.path, "preload")
	pe, ok := sf["preload"]
	if !ok {
		return nil
	}
	return &pe
}

// routingOut writes routing, groups or matrix as comments.
func (c *converter) routingOut(e entry) []*out {
	return []*out{c.dropped(e, "hotswap plans by memory, not by hand-made sets: it keeps as many models loaded as fit, "+
		"measures what each backend uses and evicts the least recently used idle ones when a model needs room "+
		"(each model's commented memory line says what these sets said of it: fill it in; pinned models are never evicted). "+
		"Requests are served by scheduling.policy: batch; fifo is llama-swap's order; priorities have no equivalent")}
}

// placementOut writes what the groups or matrix said of a model: a memory
// line to fill in, and pinned for a persistent group.
func (c *converter) placementOut(m *model) []*out {
	res := []*out{{key: "memory", value: "{ram: 0GiB, vram: 0GiB}", off: true, line: "fill in what it needs; " + m.routing}}
	if m.persistent != "" {
		res = append(res, &out{key: "pinned", value: "true",
			line: fmt.Sprintf("llama-swap's group %q is persistent: other groups never unloaded it (pinned holds against ttl too)", m.persistent)})
	}
	return res
}
