package llamaswap

import (
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// llama-swap's filters, as hotswap's params and variants.
//
// llama-swap rewrites a request's body in this order: stripParams, then
// setParams (keys sorted), then the setParamsByID entry of the name the
// client used (keys sorted); keys are sjson paths, a dot going into an
// object, as hotswap's params keys. hotswap's model params apply to the
// model's id and aliases; a variant's are laid over its model's (a model
// rule for a key the variant sets, or a key inside or around it, gives
// way). So the model's params are setParams with its own id's
// setParamsByID entry applied, and each other name is a variant setting
// what differs from them.

// rule is one parameter set: its key as llama-swap wrote it, and value.
type rule struct {
	key  string
	path []string
	v    *yaml.Node
	line int
}

// within reports whether r's key lies strictly inside outer's.
func (r rule) within(outer rule) bool {
	if len(r.path) <= len(outer.path) {
		return false
	}
	for i, k := range outer.path {
		if r.path[i] != k {
			return false
		}
	}
	return true
}

func (r rule) same(o rule) bool { return r.key == o.key }

// fold applies rules in order, as sjson sets them one after another, and
// returns rules of which none lies inside another, with the same effect:
// a key set whole replaces what was set inside it before, and a key set
// inside one set whole before goes into that value.
func fold(rules []rule) []rule {
	var out []rule
	for _, r := range rules {
		kept := out[:0:0]
		merged := false
		for _, q := range out {
			switch {
			case q.same(r) || q.within(r):
				// replaced
			case r.within(q):
				q.v = setIn(q.v, r.path[len(q.path):], r.v)
				merged = true
				kept = append(kept, q)
			default:
				kept = append(kept, q)
			}
		}
		if !merged {
			kept = append(kept, r)
		}
		out = kept
	}
	return out
}

// setIn returns a copy of n with v at path inside it; a value that is not
// a mapping is replaced by one, as sjson does.
func setIn(n *yaml.Node, path []string, v *yaml.Node) *yaml.Node {
	n = deref(n)
	c := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if n != nil && n.Kind == yaml.MappingNode {
		c.Content = append([]*yaml.Node(nil), n.Content...)
	}
	for i := 0; i+1 < len(c.Content); i += 2 {
		if c.Content[i].Value == path[0] {
			if len(path) == 1 {
				c.Content[i+1] = v
			} else {
				c.Content[i+1] = setIn(c.Content[i+1], path[1:], v)
			}
			return c
		}
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		c.Content = append(c.Content, key, v)
	} else {
		c.Content = append(c.Content, key, setIn(nil, path[1:], v))
	}
	return c
}

// equal reports whether two values are written the same.
func equal(a, b *yaml.Node) bool {
	return strings.Join(yamlLines("v", a), "\n") == strings.Join(yamlLines("v", b), "\n")
}

// readRules reads a mapping of parameters in llama-swap's order (keys
// sorted). model is protected in llama-swap and stream is the client's in
// hotswap: both become comments.
func (c *converter) readRules(e entry, off *[]*out) []rule {
	var rules []rule
	for _, pe := range c.p.entries(e.v, e.line(), e.path) {
		path := strings.Split(pe.key, ".")
		switch {
		case path[0] == "model":
			*off = append(*off, c.noteOff(pe.path+": llama-swap never sets the model; hotswap's upstream_model names the model sent upstream"))
			continue
		case path[0] == "stream":
			*off = append(*off, c.dropped(pe, "("+e.key+") whether a request streams is the client's to say in hotswap, which must read the answer it asked for"))
			continue
		case contains(path, ""):
			*off = append(*off, c.dropped(pe, "("+e.key+") hotswap's parameter keys have no empty name between dots"))
			continue
		}
		rules = append(rules, rule{key: pe.key, path: path, v: pe.v, line: pe.line()})
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].key < rules[j].key })
	return rules
}

// filtersOut writes a model's filters as its params and variants.
func (c *converter) filtersOut(m *model, e entry) []*out {
	f, _ := c.p.fields(e.v, e.line(), e.path, "stripParams", "strip_params", "setParams", "setParamsByID")
	var off []*out
	params := &out{key: "params"}

	// strip
	se, ok := f["stripParams"]
	if !ok {
		se, ok = f["strip_params"]
	}
	if ok {
		if se.v.Kind != yaml.ScalarNode {
			c.p.addf(se.line(), se.path, "must be a comma-separated string, got %s", describe(se.v))
		} else if s, ok := c.staticName(se.v.Value, m.sc, se.line(), se.path); ok {
			var keys []string
			for _, k := range strings.Split(s, ",") {
				k = strings.TrimSpace(k)
				switch {
				case k == "" || contains(keys, k):
				case k == "model":
					off = append(off, c.noteOff("stripParams model: llama-swap never strips the model"))
				case k == "stream":
					off = append(off, c.noteOff("stripParams stream: whether a request streams is the client's to say in hotswap"))
				case contains(strings.Split(k, "."), ""):
					off = append(off, c.noteOff("stripParams "+renderString(k, true)+": hotswap's keys have no empty name between dots"))
				default:
					keys = append(keys, k)
				}
			}
			if len(keys) > 0 {
				params.kids = append(params.kids, &out{key: "strip", value: flowList(keys), line: se.key})
			}
		}
	}

	var base []rule
	if se, ok := f["setParams"]; ok {
		base = c.readRules(se, &off)
	}
	byID := map[string][]rule{}
	if be, ok := f["setParamsByID"]; ok {
		for _, b := range append(m.byID, selfEntry(m)...) {
			byID[b.name] = c.readRules(b.e, &off)
		}
		_ = be
	}
	modelRules := fold(append(append([]rule(nil), base...), byID[m.id]...))
	if len(modelRules) > 0 {
		set := &out{key: "set"}
		if m.self != nil {
			set.line = "setParams, with setParamsByID's " + m.id + " entry over them"
		}
		sortByLine(modelRules)
		for _, r := range modelRules {
			set.kids = append(set.kids, c.valueOut(r.key, r.v, m.sc, r.line, "params.set."+r.key))
		}
		params.kids = append(params.kids, set)
	}
	var res []*out
	if len(params.kids) > 0 {
		res = append(res, params)
	}
	res = append(res, off...)

	if len(m.byID) == 0 {
		return res
	}
	variants := &out{key: "variants", line: "setParamsByID: other names served by this model's backend, without a swap"}
	for _, b := range m.byID {
		variants.kids = append(variants.kids, c.variantOut(m, b, base, byID[b.name], modelRules))
	}
	return append(res, variants)
}

func selfEntry(m *model) []byIDEntry {
	if m.self == nil {
		return nil
	}
	return []byIDEntry{*m.self}
}

func sortByLine(rules []rule) {
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].line < rules[j].line })
}

// variantOut writes one setParamsByID name as a variant: what its rules
// set that the model's do not.
func (c *converter) variantOut(m *model, b byIDEntry, base, own, modelRules []rule) *out {
	o := &out{key: b.name}
	eff := fold(append(append([]rule(nil), base...), own...))
	var mine []rule
	for _, r := range eff {
		inherited := false
		for _, q := range modelRules {
			if q.same(r) && equal(q.v, r.v) {
				inherited = true
				break
			}
		}
		if !inherited {
			mine = append(mine, r)
		}
	}
	// What the model sets that llama-swap did not set for this name, and
	// that the variant does not override: hotswap would set it too.
	var leaks []string
	for _, q := range modelRules {
		found, touched := false, false
		for _, r := range eff {
			if q.same(r) && equal(q.v, r.v) {
				found = true
			}
		}
		for _, r := range mine {
			if q.same(r) || q.within(r) || r.within(q) {
				touched = true
			}
		}
		if !found && !touched {
			leaks = append(leaks, q.key)
		}
	}
	if len(leaks) > 0 {
		o.head = append(o.head, wrap("llama-swap did not set "+strings.Join(leaks, ", ")+" for "+b.name+
			" (setParamsByID's "+m.id+" entry applied to "+m.id+" alone); as a variant it takes its model's params: set them here if they must differ", maxWidth-8)...)
	}
	if len(mine) > 0 {
		sortByLine(mine)
		set := &out{key: "set"}
		for _, r := range mine {
			set.kids = append(set.kids, c.valueOut(r.key, r.v, m.sc, r.line, "params.set."+r.key))
		}
		o.kids = append(o.kids, &out{key: "params", kids: []*out{set}})
	}
	listed := c.includeAliases && !m.unlisted
	if listed {
		for _, k := range []string{"name", "description"} {
			if e, ok := m.f[k]; ok {
				o.kids = append(o.kids, c.infoOut(m, e)...)
			}
		}
	} else {
		why := "llama-swap leaves setParamsByID's names out of /v1/models unless includeAliasesInList"
		if m.unlisted {
			why = "as its model"
		}
		o.kids = append(o.kids, &out{key: "unlisted", value: "true", line: why})
	}
	if len(o.kids) == 0 {
		o.value = "{}"
	}
	return o
}
