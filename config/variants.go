package config

import (
	"slices"

	"gopkg.in/yaml.v3"
)

// variants reads a model's variants: a mapping of variant id to its own
// aliases, params and listing. Their params are merged with the model's
// once the whole model is read (see inherit).
func (p *parser) variants(m *Model, n *yaml.Node, path string) []*Variant {
	var out []*Variant
	for _, kv := range p.pairs(n, path) {
		if !validName(kv.key) {
			p.addf(path, "invalid variant id %q (must be non-empty, without whitespace)", kv.key)
			continue
		}
		v := &Variant{ID: kv.key, Model: m.ID}
		if !isNull(kv.value) {
			p.fields(kv.value, join(path, kv.key), map[string]setter{
				"aliases":      p.aliasList(&v.Aliases),
				"params":       p.params(&v.Params),
				"unlisted":     p.boolean(&v.Unlisted),
				"name":         p.str(&v.Info.Name),
				"description":  p.str(&v.Info.Description),
				"capabilities": p.capabilities(&v.Info.Capabilities),
				"metadata":     p.metadata(&v.Info.Metadata),
			})
		}
		out = append(out, v)
	}
	return out
}

// inherit gives m's variants what they take from m: its params under
// their own, and its capabilities and metadata unless they say otherwise.
// A name and description are a variant's own.
func (p *parser) inherit(m *Model) {
	for _, v := range m.Variants {
		v.Params = mergeParams(m.Params, v.Params)
		if v.Info.Capabilities == nil {
			v.Info.Capabilities = m.Info.Capabilities
		}
		if v.Info.Metadata == nil {
			v.Info.Metadata = m.Info.Metadata
		}
	}
}

// mergeParams lays a variant's params over its model's: a model rule for a
// key the variant sets, defaults or strips (or for a key inside or around
// one) gives way to the variant's.
func mergeParams(model, own Params) Params {
	touched := func(pp ParamPath) bool {
		for _, r := range slices.Concat(own.Set, own.Default) {
			if r.Path.String() == pp.String() || pp.within(r.Path) || r.Path.within(pp) {
				return true
			}
		}
		for _, s := range own.Strip {
			if s.String() == pp.String() || pp.within(s) {
				return true
			}
		}
		return false
	}
	var out Params
	for _, s := range model.Strip {
		out.Strip = append(out.Strip, s)
	}
	for _, s := range own.Strip {
		if !slices.ContainsFunc(out.Strip, func(x ParamPath) bool { return x.String() == s.String() }) {
			out.Strip = append(out.Strip, s)
		}
	}
	for _, r := range model.Set {
		if !touched(r.Path) {
			out.Set = append(out.Set, r)
		}
	}
	out.Set = append(out.Set, own.Set...)
	for _, r := range model.Default {
		if !touched(r.Path) {
			out.Default = append(out.Default, r)
		}
	}
	out.Default = append(out.Default, own.Default...)
	return out
}

// name stores a name a client or backend uses, checked as model ids are.
func (p *parser) name(dst *string, what string) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		if !validName(s) {
			p.addf(path, "invalid %s %q (must be non-empty, without whitespace)", what, s)
			return
		}
		*dst = s
	}
}

// capabilities reads a list drawn from Capabilities.
func (p *parser) capabilities(dst *[]string) setter {
	known := make(map[string]setter, len(Capabilities))
	for _, c := range Capabilities {
		known[c] = nil
	}
	return func(v *yaml.Node, path string) {
		list, ok := p.strList(v, path)
		if !ok {
			return
		}
		out := []string{}
		for i, c := range list {
			_, isKnown := known[c]
			switch {
			case !isKnown:
				hint := ""
				if s := suggest(c, known); s != "" {
					hint = " (did you mean " + s + "?)"
				}
				p.addf(index(path, i), "unknown capability %q%s; use text, image, audio, embeddings or tools", c, hint)
				ok = false
			case slices.Contains(out, c):
				p.addf(index(path, i), "%q is listed twice", c)
				ok = false
			default:
				out = append(out, c)
			}
		}
		if ok {
			*dst = out
		}
	}
}

// metadata reads free data, which must be a mapping, as a JSON object.
func (p *parser) metadata(dst *[]byte) setter {
	return func(v *yaml.Node, path string) {
		if deref(v).Kind != yaml.MappingNode {
			p.addf(path, "must be a mapping, got %s", describe(v))
			return
		}
		if b, ok := p.toJSON(v, path); ok {
			*dst = b
		}
	}
}

// valueOf returns the value of key in mapping n (merge keys included), or
// nil. It reports nothing: the mapping is walked again, with its problems
// reported, by fields.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var merged *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.Tag == "!!merge":
			if merged == nil {
				if d := deref(v); d != nil && d.Kind == yaml.SequenceNode {
					for _, item := range d.Content {
						if merged = valueOf(item, key); merged != nil {
							break
						}
					}
				} else {
					merged = valueOf(v, key)
				}
			}
		case k.Kind == yaml.ScalarNode && k.Value == key:
			return v
		}
	}
	return merged
}
