package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// parser walks yaml.Nodes and collects problems instead of stopping at the
// first, so that one run reports everything wrong with a file. Its helpers
// store a value only when it is valid, and report it otherwise.
type parser struct {
	problems []string
	// scope holds the macros in force where values are being read: the
	// file's, or a model's on top of them.
	scope *macros
	// running is set while a command run on a running backend (its stop,
	// sleep or wake) is read: ${PID} is a placeholder there.
	running bool
}

// addf records a problem with the field at path ("" for the top level).
func (p *parser) addf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.problems = append(p.problems, msg)
}

// join appends key to a field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends a list index to a field path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// deref follows YAML aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// pair is one key and value of a mapping.
type pair struct {
	key   string
	value *yaml.Node
}

// pairs returns the entries of a mapping in file order. Merge keys
// (<<: *anchor) are expanded in place, keys written out taking precedence
// over merged ones, so that anchors can share settings between models. A key
// written twice is reported.
func (p *parser) pairs(n *yaml.Node, path string) []pair {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.addf(path, "must be a mapping, got %s", describe(n))
		return nil
	}
	written := make(map[string]int) // key -> line, for the duplicate message
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			continue
		}
		if line, ok := written[k.Value]; ok {
			p.addf(join(path, k.Value), "set twice (lines %d and %d)", line, k.Line)
			continue
		}
		written[k.Value] = k.Line
	}

	var out []pair
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.addf(path, "keys must be strings, got %s on line %d", describe(k), k.Line)
		case k.Tag == "!!merge":
			for _, m := range p.merged(v, path) {
				if _, ok := written[m.key]; !ok && !seen[m.key] {
					seen[m.key] = true
					out = append(out, m)
				}
			}
		case !seen[k.Value]:
			seen[k.Value] = true
			out = append(out, pair{key: k.Value, value: v})
		}
	}
	return out
}

// merged returns the entries a merge key brings in: one mapping, or a list
// of mappings where earlier ones win.
func (p *parser) merged(v *yaml.Node, path string) []pair {
	v = deref(v)
	switch v.Kind {
	case yaml.MappingNode:
		return p.pairs(v, path)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range v.Content {
			if deref(item).Kind != yaml.MappingNode {
				p.addf(path, "<< must merge a mapping or a list of mappings, got %s", describe(item))
				continue
			}
			out = append(out, p.pairs(item, path)...)
		}
		return out
	}
	p.addf(path, "<< must merge a mapping or a list of mappings, got %s", describe(v))
	return nil
}

// setter stores one field's value, reporting it under path if invalid.
type setter func(v *yaml.Node, path string)

// fields walks a mapping with a fixed set of keys. Each known key's setter is
// called unless its value is null (which means "use the default"); every
// unknown key is reported, with a suggestion when it looks like a typo.
func (p *parser) fields(n *yaml.Node, path string, known map[string]setter) {
	for _, kv := range p.pairs(n, path) {
		set, ok := known[kv.key]
		if !ok {
			if s := suggest(kv.key, known); s != "" {
				p.addf(path, "unknown key %q (did you mean %q?)", kv.key, s)
			} else {
				p.addf(path, "unknown key %q", kv.key)
			}
			continue
		}
		if isNull(kv.value) {
			continue
		}
		set(kv.value, join(path, kv.key))
	}
}

// suggest returns the known key closest to key if it is close enough to be
// a likely typo, else "".
func suggest(key string, known map[string]setter) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names) // a stable answer when two are as close
	best, bestDist := "", len(key)/3+1
	for _, k := range names {
		if d := EditDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns a scalar's text with its macros and environment
// variables expanded (see macros.go). Numbers and booleans are accepted as
// their text, so that an API key of digits needs no quotes.
func (p *parser) scalar(v *yaml.Node, path string) (string, bool) {
	raw, ok := p.rawScalar(v, path)
	if !ok {
		return "", false
	}
	s, ok := p.expand(path, raw)
	if !ok {
		// The text as written, so that checks of a list's other items
		// go on without a follow-on problem about this one.
		return raw, false
	}
	return s, true
}

// rawScalar is scalar without the expansion.
func (p *parser) rawScalar(v *yaml.Node, path string) (string, bool) {
	v = deref(v)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		p.addf(path, "must be a string, got %s", describe(v))
		return "", false
	}
	return v.Value, true
}

func (p *parser) str(dst *string) setter {
	return func(v *yaml.Node, path string) {
		if s, ok := p.scalar(v, path); ok {
			*dst = s
		}
	}
}

// strList reads a list of strings, reporting each bad item by index.
func (p *parser) strList(v *yaml.Node, path string) ([]string, bool) {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		p.addf(path, "must be a list, got %s", describe(v))
		return nil, false
	}
	out := make([]string, 0, len(v.Content))
	ok := true
	for i, item := range v.Content {
		s, good := p.scalar(item, index(path, i))
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

// oneOf stores a string that must be one of allowed.
func (p *parser) oneOf(dst *string, allowed ...string) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		for _, a := range allowed {
			if s == a {
				*dst = s
				return
			}
		}
		p.addf(path, "invalid value %q (use %s)", s, strings.Join(allowed, ", "))
	}
}

func (p *parser) boolean(dst *bool) setter {
	return func(v *yaml.Node, path string) {
		v, ok := p.expandedNode(v, path)
		if !ok {
			return
		}
		var b bool
		if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
			p.addf(path, "must be true or false, got %s", describe(v))
			return
		}
		*dst = b
	}
}

// integer stores an int no smaller than least.
func (p *parser) integer(dst *int, least int) setter {
	return func(v *yaml.Node, path string) {
		v, ok := p.expandedNode(v, path)
		if !ok {
			return
		}
		var n int
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
			p.addf(path, "must be an integer, got %s", describe(v))
			return
		}
		if n < least {
			p.addf(path, "must be at least %d, got %d", least, n)
			return
		}
		*dst = n
	}
}

// size stores a byte size (see ParseSize); a YAML integer is bytes. Zero is
// valid only when allowZero.
func (p *parser) size(dst *int64, allowZero bool) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		n, err := ParseSize(s)
		switch {
		case err != nil:
			p.addf(path, "%v", err)
		case n == 0 && !allowZero:
			p.addf(path, "must be more than 0")
		default:
			*dst = n
		}
	}
}

// duration stores a Go duration (30s, 5m, 1h30m). Negative durations are
// never valid; zero only when allowZero.
func (p *parser) duration(dst *time.Duration, allowZero bool) setter {
	return func(v *yaml.Node, path string) {
		s, ok := p.scalar(v, path)
		if !ok {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			p.addf(path, "invalid duration %q (use a Go duration such as 30s, 5m, 1h30m)", s)
			return
		}
		switch {
		case d < 0:
			p.addf(path, "must not be negative, got %q", s)
		case d == 0 && !allowZero:
			p.addf(path, "must be more than 0")
		default:
			*dst = d
		}
	}
}
