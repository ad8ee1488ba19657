package llamaswap

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hotswap/hotswap/config"
)

// Problem is one thing wrong with a llama-swap file: where it is and what.
type Problem struct {
	// Line is the line in the llama-swap file, from 1; 0 for the whole
	// file.
	Line int
	// Path names the key, as models.qwen.ttl.
	Path string
	Msg  string
}

// String writes the problem as "line 12: models.qwen.ttl: must be ...".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in a llama-swap file, so that it can be
// fixed in one pass.
type Error struct {
	Problems []Problem
}

// Error returns the problems, one a line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// entry is one key and value of a mapping in the llama-swap file.
type entry struct {
	key  string
	k    *yaml.Node // the key, for its line
	v    *yaml.Node // the value, aliases followed
	path string     // the key's path, models.qwen.ttl
}

// line is where the entry is written.
func (e entry) line() int { return e.k.Line }

// problems collects what is wrong while the file is read.
type problems struct {
	list []Problem
}

func (p *problems) addf(line int, path, format string, args ...any) {
	p.list = append(p.list, Problem{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	// Some settings are read twice (a model's filters for its names,
	// then for its params): say each problem once.
	seen := make(map[Problem]bool)
	list := p.list[:0:0]
	for _, q := range p.list {
		if !seen[q] {
			seen[q] = true
			list = append(list, q)
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
	return &Error{Problems: list}
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
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// entries returns a mapping's entries in file order, merge keys (<<:
// *anchor) expanded in place with the keys written out taking precedence,
// as llama-swap's YAML decoder does. A key written twice is a problem, as
// it is for llama-swap.
func (p *problems) entries(n *yaml.Node, line int, path string) []entry {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.addf(line, path, "must be a mapping, got %s", describe(n))
		return nil
	}
	written := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			continue
		}
		if first, ok := written[k.Value]; ok {
			p.addf(k.Line, join(path, k.Value), "written twice (lines %d and %d)", first, k.Line)
			continue
		}
		written[k.Value] = k.Line
	}
	var out []entry
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.addf(k.Line, path, "keys must be strings, got %s", describe(k))
		case k.Tag == "!!merge":
			for _, m := range p.merged(v, path) {
				if _, ok := written[m.key]; !ok && !seen[m.key] {
					seen[m.key] = true
					out = append(out, m)
				}
			}
		case !seen[k.Value]:
			seen[k.Value] = true
			out = append(out, entry{key: k.Value, k: k, v: deref(v), path: join(path, k.Value)})
		}
	}
	return out
}

// merged returns the entries a merge key brings in: one mapping, or a list
// of mappings where earlier ones win.
func (p *problems) merged(v *yaml.Node, path string) []entry {
	line := v.Line
	v = deref(v)
	switch v.Kind {
	case yaml.MappingNode:
		return p.entries(v, line, path)
	case yaml.SequenceNode:
		var out []entry
		for _, item := range v.Content {
			if deref(item).Kind != yaml.MappingNode {
				p.addf(item.Line, path, "<< must merge a mapping or a list of mappings, got %s", describe(item))
				continue
			}
			out = append(out, p.entries(item, item.Line, path)...)
		}
		return out
	}
	p.addf(line, path, "<< must merge a mapping or a list of mappings, got %s", describe(v))
	return nil
}

// fields reads a mapping whose keys are known, reporting the others, and
// returns the entries by key (null values left out: llama-swap reads them
// as absent) and in file order.
func (p *problems) fields(n *yaml.Node, line int, path string, known ...string) (map[string]entry, []entry) {
	byKey := make(map[string]entry)
	var order []entry
	for _, e := range p.entries(n, line, path) {
		if !contains(known, e.key) {
			if s := suggest(e.key, known); s != "" {
				p.addf(e.line(), e.path, "llama-swap has no such key (did you mean %s?)", s)
			} else {
				p.addf(e.line(), e.path, "llama-swap has no such key (known here: %s)", strings.Join(known, ", "))
			}
			continue
		}
		if isNull(e.v) {
			continue
		}
		byKey[e.key] = e
		order = append(order, e)
	}
	return byKey, order
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the known key closest to key when it is close enough to
// be a typo, else "".
func suggest(key string, known []string) string {
	best, bestDist := "", len(key)/3+1
	names := append([]string(nil), known...)
	sort.Strings(names)
	for _, k := range names {
		if d := config.EditDistance(strings.ToLower(key), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// plainValue decodes a scalar as llama-swap's decoder sees it: a string,
// int, float64, bool or nil.
func plainValue(n *yaml.Node) any {
	var v any
	if err := n.Decode(&v); err != nil {
		return n.Value
	}
	switch x := v.(type) {
	case int64:
		return int(x)
	case uint64:
		return int(x)
	}
	return v
}

// stripComments returns a copy of n and what it holds, without comments
// and with aliases followed, for writing n out again.
func stripComments(n *yaml.Node) *yaml.Node {
	n = deref(n)
	if n == nil {
		return nil
	}
	c := *n
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	c.Anchor = ""
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = stripComments(k)
		}
	}
	return &c
}
