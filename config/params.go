package config

import (
	"encoding/json"
	"math"
	"strings"

	"gopkg.in/yaml.v3"
)

// params reads a model's or variant's params: set and default (mappings
// of key to any YAML value) and strip (a list of keys). A key is a path:
// chat_template_kwargs.enable_thinking is enable_thinking inside
// chat_template_kwargs.
func (p *parser) params(dst *Params) setter {
	return func(v *yaml.Node, path string) {
		var out Params
		p.fields(v, path, map[string]setter{
			"set":     p.paramValues(&out.Set),
			"default": p.paramValues(&out.Default),
			"strip": func(v *yaml.Node, path string) {
				list, ok := p.strList(v, path)
				if !ok {
					return
				}
				for i, k := range list {
					if pp, ok := p.paramPath(k, index(path, i)); ok {
						out.Strip = append(out.Strip, pp)
					}
				}
			},
		})
		p.checkParams(&out, path)
		*dst = out
	}
}

// paramValues reads a mapping of key to value into JSON values.
func (p *parser) paramValues(dst *[]Param) setter {
	return func(v *yaml.Node, path string) {
		for _, kv := range p.pairs(v, path) {
			at := join(path, kv.key)
			pp, ok := p.paramPath(kv.key, path)
			if !ok {
				continue
			}
			value, ok := p.toJSON(kv.value, at)
			if !ok {
				continue
			}
			*dst = append(*dst, Param{Path: pp, Value: value})
		}
	}
}

// paramPath splits a key written with dots into its path.
func (p *parser) paramPath(key, path string) (ParamPath, bool) {
	pp := ParamPath(strings.Split(key, "."))
	for _, k := range pp {
		if k == "" {
			p.addf(path, "invalid key %q (an empty name between dots)", key)
			return nil, false
		}
	}
	switch pp[0] {
	case "model":
		p.addf(path, "%q: the model a request names is hotswap's to route by; to send the backend another name, set upstream_model", key)
		return nil, false
	case "stream":
		p.addf(path, "%q: whether a request streams is the client's to say, since it must read the answer it asked for", key)
		return nil, false
	}
	return pp, true
}

// checkParams reports rules that contradict each other: a key both set and
// defaulted, or a key set inside another that is set whole (which of the
// two would win would depend on their order).
func (p *parser) checkParams(ps *Params, path string) {
	type rule struct {
		pp   ParamPath
		kind string
	}
	var rules []rule
	for _, r := range ps.Set {
		rules = append(rules, rule{r.Path, "set"})
	}
	for _, r := range ps.Default {
		rules = append(rules, rule{r.Path, "default"})
	}
	for i, a := range rules {
		for _, b := range rules[i+1:] {
			switch {
			case a.pp.String() == b.pp.String() && a.kind != b.kind:
				p.addf(path, "%s is both set and default: say which", a.pp)
			case a.pp.within(b.pp) || b.pp.within(a.pp):
				outer, inner := a, b
				if a.pp.within(b.pp) {
					outer, inner = b, a
				}
				p.addf(path, "%s (%s) lies inside %s (%s): set the one or the other", inner.pp, inner.kind, outer.pp, outer.kind)
			}
		}
	}
}

// within reports whether pp lies strictly inside outer.
func (pp ParamPath) within(outer ParamPath) bool {
	if len(pp) <= len(outer) {
		return false
	}
	for i, k := range outer {
		if pp[i] != k {
			return false
		}
	}
	return true
}

// toJSON writes a YAML value as JSON: mappings as objects (keys in file
// order), lists as arrays, scalars by their YAML type after expansion.
func (p *parser) toJSON(v *yaml.Node, path string) ([]byte, bool) {
	v, ok := p.expandedNode(v, path)
	if !ok {
		return nil, false
	}
	switch v.Kind {
	case yaml.MappingNode:
		b := []byte{'{'}
		for i, kv := range p.pairs(v, path) {
			if i > 0 {
				b = append(b, ',')
			}
			val, good := p.toJSON(kv.value, join(path, kv.key))
			if !good {
				ok = false
				continue
			}
			b = append(b, jsonString(kv.key)...)
			b = append(b, ':')
			b = append(b, val...)
		}
		return append(b, '}'), ok
	case yaml.SequenceNode:
		b := []byte{'['}
		for i, item := range v.Content {
			if i > 0 {
				b = append(b, ',')
			}
			val, good := p.toJSON(item, index(path, i))
			ok = ok && good
			b = append(b, val...)
		}
		return append(b, ']'), ok
	}
	switch v.Tag {
	case "!!null":
		return []byte("null"), true
	case "!!bool", "!!int", "!!float":
		var x any
		if err := v.Decode(&x); err != nil {
			p.addf(path, "invalid %s", describe(v))
			return nil, false
		}
		if f, isFloat := x.(float64); isFloat && (math.IsInf(f, 0) || math.IsNaN(f)) {
			p.addf(path, "%s has no JSON form", v.Value)
			return nil, false
		}
		b, err := json.Marshal(x)
		if err != nil {
			p.addf(path, "invalid %s", describe(v))
			return nil, false
		}
		return b, true
	}
	return jsonString(v.Value), true
}

// jsonString is s as a JSON string.
func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
