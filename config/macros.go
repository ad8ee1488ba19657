package config

import (
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// A value in the file may refer to three kinds of names, all written ${...}:
//
//   - ${name}: a macro, a string defined under macros: at the top of the
//     file or in a model (a model's own on top of the file's). Macros may
//     use other macros; they are expanded as the file is read.
//   - ${env:NAME}: hotswap's environment variable NAME, read as the file is
//     read (and on every reload), so that keys and paths stay out of the
//     file. One that is not set is a problem.
//   - ${PORT} and ${MODEL}: the backend's port and the model's id, left as
//     they are until the backend starts (see Model.Expand).
//
// $${ is a literal ${.
//
// Macros are expanded before env references, and a cmd given as one string
// is split into arguments between the two: a macro may stand for several
// arguments, while a variable's value stays one argument whatever it holds,
// and stays out of the log (Model.LogCmd).

// refRE matches a ${...} reference, or the $${ escape.
var refRE = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

// macroNameRE is what a macro may be called.
var macroNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// maxExpanded bounds what one value may grow to through macros: macros
// that use each other several times over grow exponentially, and a file
// should not be able to take hotswap's memory.
const maxExpanded = 1 << 20

// macros is the set of macros in force where a value is read: a model's
// own, then the file's.
type macros struct {
	parent *macros
	defs   map[string]macroDef
	done   map[string]string // expanded values, filled as they are used
}

type macroDef struct {
	value string
	path  string // where it is defined, for messages
}

// lookup finds a macro here or in the scopes above, with the scope that
// defines it.
func (m *macros) lookup(name string) (macroDef, *macros, bool) {
	for s := m; s != nil; s = s.parent {
		if d, ok := s.defs[name]; ok {
			return d, s, true
		}
	}
	return macroDef{}, nil, false
}

// readMacros reads a macros: mapping into a scope under parent.
func (p *parser) readMacros(n *yaml.Node, path string, parent *macros) *macros {
	m := &macros{parent: parent, defs: make(map[string]macroDef), done: make(map[string]string)}
	if isNull(n) {
		return m
	}
	for _, kv := range p.pairs(n, path) {
		at := join(path, kv.key)
		switch {
		case kv.key == "PORT" || kv.key == "MODEL":
			p.addf(path, "%q is hotswap's own placeholder: a macro may not take its name", kv.key)
			continue
		case !macroNameRE.MatchString(kv.key):
			p.addf(path, "invalid macro name %q (letters, digits, _, - and ., starting with a letter or _)", kv.key)
			continue
		}
		if isNull(kv.value) {
			p.addf(at, "must be a string, got nothing")
			continue
		}
		v, ok := p.rawScalar(kv.value, at)
		if !ok {
			continue
		}
		m.defs[kv.key] = macroDef{value: v, path: at}
	}
	return m
}

// expandMacros replaces each ${name} in s with its macro's value, leaving
// ${env:...}, ${PORT}, ${MODEL} and $${ for later. Problems are reported
// at path.
func (p *parser) expandMacros(path, s string) (string, bool) {
	if !strings.Contains(s, "${") {
		return s, true
	}
	ok := true
	out := refRE.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$${" {
			return ref
		}
		if ref == PlaceholderPort || ref == PlaceholderModel || strings.HasPrefix(ref, "${env:") ||
			p.running && ref == PlaceholderPID {
			return ref
		}
		v, good := p.macro(ref[2:len(ref)-1], path, nil)
		if !good {
			ok = false
			return ref
		}
		return v
	})
	if ok && len(out) > maxExpanded {
		p.addf(path, "its macros expand to more than %s", FormatSize(maxExpanded))
		return "", false
	}
	return out, ok
}

// macro returns name's value expanded, looked up from the scope in force.
// stack holds the macros being expanded, to catch a macro that uses
// itself.
func (p *parser) macro(name, path string, stack []string) (string, bool) {
	d, scope, found := p.scope.lookup(name)
	if !found {
		p.addf(path, "unknown macro ${%s} (define it under macros:, or write ${env:%s} for an environment variable; "+
			"${PORT} and ${MODEL} are the only placeholders, and $${ is a literal ${)", name, name)
		return "", false
	}
	if v, ok := scope.done[name]; ok {
		return v, true
	}
	for i, s := range stack {
		if s == name {
			p.addf(d.path, "macros use each other in a loop: %s", strings.Join(append(stack[i:], name), " -> "))
			return "", false
		}
	}
	// A macro's value is read in the scope that defines it: a file-wide
	// macro never sees a model's.
	saved := p.scope
	p.scope = scope
	defer func() { p.scope = saved }()
	stack = append(stack, name)
	ok := true
	v := refRE.ReplaceAllStringFunc(d.value, func(ref string) string {
		if ref == "$${" || ref == PlaceholderPort || ref == PlaceholderModel || strings.HasPrefix(ref, "${env:") {
			return ref
		}
		r, good := p.macro(ref[2:len(ref)-1], d.path, stack)
		ok = ok && good
		return r
	})
	if ok && len(v) > maxExpanded {
		p.addf(d.path, "expands to more than %s", FormatSize(maxExpanded))
		ok = false
	}
	if ok {
		scope.done[name] = v
	}
	return v, ok
}

// expandEnv replaces each ${env:NAME} in s with that variable's value and
// each $${ with ${. A variable that is not set, or a bad name, is a
// problem at path; the value is never put in a message.
func (p *parser) expandEnv(path, s string) (string, bool) {
	if !strings.Contains(s, "${") {
		return s, true
	}
	ok := true
	out := refRE.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$${" {
			return "${"
		}
		name, isEnv := strings.CutPrefix(ref[2:len(ref)-1], "env:")
		if !isEnv {
			return ref
		}
		if !ValidEnvName(name) {
			p.addf(path, "invalid environment variable name %q in %s", name, ref)
			ok = false
			return ""
		}
		v, set := os.LookupEnv(name)
		if !set {
			p.addf(path, "the environment variable %s is not set", name)
			ok = false
		}
		return v
	})
	return out, ok
}

// unescape is expandEnv for a value shown in logs: $${ becomes ${ and
// ${env:NAME} stays as it is written.
func unescape(s string) string {
	return strings.ReplaceAll(s, "$${", "${")
}

// expand is both steps, for a value read whole.
func (p *parser) expand(path, s string) (string, bool) {
	s, ok := p.expandMacros(path, s)
	if !ok {
		return "", false
	}
	return p.expandEnv(path, s)
}

// expandedNode returns v with its references expanded. A plain (unquoted)
// scalar that held references is typed afresh from its new text, so that
// "parallel: ${env:SLOTS}" is the integer the variable holds.
func (p *parser) expandedNode(v *yaml.Node, path string) (*yaml.Node, bool) {
	v = deref(v)
	if v == nil || v.Kind != yaml.ScalarNode || !strings.Contains(v.Value, "${") {
		return v, true
	}
	s, ok := p.expand(path, v.Value)
	if !ok {
		return nil, false
	}
	n := *v
	n.Value = s
	if v.Style == 0 {
		// An empty value, or one YAML would read as null, stays a string:
		// a variable set to nothing is not "use the default".
		n.Tag = "!!str"
		var doc yaml.Node
		if yaml.Unmarshal([]byte(s), &doc) == nil && len(doc.Content) == 1 &&
			doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag != "!!null" {
			n.Tag = doc.Content[0].Tag
		}
	}
	return &n, true
}
