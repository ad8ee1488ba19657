package llamaswap

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// out is one entry of the YAML written for hotswap, with the comments that
// go with it. Writing comments by hand, rather than through yaml.v3's
// comment fields, puts each exactly where it belongs: above its entry, at
// the end of its line, or in place of an entry that is written commented
// out.
type out struct {
	// head are comment lines written above the entry.
	head []string
	// key is the entry's key; "" for an item of a list.
	key string
	// value is the inline value, already YAML text; "" when the entry
	// has kids or block lines (or is only comments, when key is "" too).
	value string
	// block are the lines of a literal block scalar (|-).
	block []string
	// kids are the entries of a nested mapping, or a list's items when
	// list is set.
	kids []*out
	list bool
	// line is a comment written after the value.
	line string
	// off writes the entry, kids and all, commented out.
	off bool
}

// note returns an entry that is only comment lines.
func note(lines ...string) *out { return &out{head: lines} }

// render writes entries as YAML text.
func render(entries []*out) []byte {
	var w writer
	for _, e := range entries {
		w.entry(e, 0, false)
	}
	return []byte(w.b.String())
}

type writer struct{ b strings.Builder }

func (w *writer) raw(indent int, commented bool, text string) {
	w.b.WriteString(strings.Repeat(" ", indent))
	if commented {
		w.b.WriteString("# ")
	}
	w.b.WriteString(text)
	w.b.WriteByte('\n')
}

func (w *writer) comment(indent int, text string) {
	if text == "" {
		w.raw(indent, false, "#")
		return
	}
	w.raw(indent, false, "# "+text)
}

// maxWidth is the widest a line with a comment gets before the comment is
// wrapped.
const maxWidth = 100

// wrap splits text into lines of at most width, at spaces, the lines after
// the first indented by two.
func wrap(text string, width int) []string {
	width = max(width, 40)
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) > width:
			lines = append(lines, line)
			line = "  " + w
		default:
			line += " " + w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// entry writes e at indent. commented is set inside an entry written
// commented out.
func (w *writer) entry(e *out, indent int, commented bool) {
	for _, h := range e.head {
		w.comment(indent, h)
	}
	if e.key == "" && e.value == "" && len(e.kids) == 0 && len(e.block) == 0 {
		return // comments only
	}
	commented = commented || e.off
	tail := ""
	if e.line != "" {
		tail = "  # " + e.line
		// A comment that would make a long line goes above instead.
		if indent+len(e.key)+len(e.value)+len(tail) > maxWidth && len(e.block) == 0 {
			for _, l := range wrap(e.line, maxWidth-indent-2) {
				w.comment(indent, l)
			}
			tail = ""
		}
	}
	if e.key == "" {
		// A list item: "- value", or "- " before the first line of a
		// mapping's entries.
		switch {
		case len(e.kids) > 0:
			// The first entry goes on the dash's line: its own head
			// comments go above the item.
			first := *e.kids[0]
			for _, h := range first.head {
				w.comment(indent, h)
			}
			first.head = nil
			var sub writer
			sub.entry(&first, indent+2, commented)
			for _, k := range e.kids[1:] {
				sub.entry(k, indent+2, commented)
			}
			from, to := strings.Repeat(" ", indent+2), strings.Repeat(" ", indent)
			if commented {
				from += "# "
				to += "# "
			}
			w.b.WriteString(strings.Replace(sub.b.String(), from, to+"- ", 1))
		default:
			w.raw(indent, commented, "- "+e.value+tail)
		}
		return
	}
	key := renderKey(e.key) + ":"
	switch {
	case len(e.block) > 0:
		w.raw(indent, commented, key+" |-"+tail)
		for _, l := range e.block {
			if l == "" {
				w.b.WriteByte('\n')
				continue
			}
			w.raw(indent+2, commented, l)
		}
	case len(e.kids) > 0:
		w.raw(indent, commented, key+tail)
		for _, k := range e.kids {
			w.entry(k, indent+2, commented)
		}
	default:
		w.raw(indent, commented, key+" "+e.value+tail)
	}
}

// renderKey writes a mapping key, quoted when YAML needs it.
func renderKey(k string) string {
	return renderString(k, false)
}

// renderString writes s as a YAML string on one line. quote forces double
// quotes, so that hotswap never reads the text as another type.
func renderString(s string, quote bool) string {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if quote || strings.ContainsAny(s, "\n\r\t") {
		n.Style = yaml.DoubleQuotedStyle
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		n.Style = yaml.DoubleQuotedStyle
		b, _ = yaml.Marshal(n)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// renderPlain writes s unquoted when YAML reads it back as the same string,
// so that hotswap types it afresh once its references are expanded (a
// macro holding 0.7 gives a number); quoted otherwise.
func renderPlain(s string) string {
	if s == "" || strings.ContainsAny(s, "\n\r\t") || strings.Contains(s, " #") ||
		strings.HasSuffix(s, " ") || strings.HasPrefix(s, " ") {
		return renderString(s, true)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("k: "+s), &doc); err != nil || len(doc.Content) != 1 {
		return renderString(s, true)
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode || len(m.Content) != 2 {
		return renderString(s, true)
	}
	v := m.Content[1]
	if v.Kind != yaml.ScalarNode || v.Style != 0 || v.Value != s || v.Tag != "!!str" {
		return renderString(s, true)
	}
	return s
}

// flowList writes a list of strings as [a, b], each quoted when YAML needs
// it (or when it holds a reference: inside brackets a plain ${...} would
// not read back).
func flowList(items []string) string {
	parts := make([]string, len(items))
	for i, s := range items {
		parts[i] = renderString(s, strings.Contains(s, "${") || strings.ContainsAny(s, "[]{},"))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// yamlLines writes a node as block YAML, one string a line, for a section
// written commented out.
func yamlLines(key string, n *yaml.Node) []string {
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		stripComments(n),
	}}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return []string{key + ": (not shown: " + err.Error() + ")"}
	}
	enc.Close()
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}
