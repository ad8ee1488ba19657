package llamaswap

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// llama-swap's macros, and how each becomes hotswap's.
//
// llama-swap replaces ${env.NAME} in the file's text before reading it,
// then, value by value, each macro of the model's list (its id as
// MODEL_ID, the file's macros, the model's own laid over them in place)
// from the last to the first: a value that is exactly ${name} becomes the
// macro's value with its type (a number stays a number), any other
// ${name} is replaced by the value's text. ${PORT} comes last, only in
// models whose cmd uses it, and ${PID} only in cmdStop. Whatever
// ${name} is left over is an error.
//
// hotswap's macros are the same idea written ${name}, with ${env:NAME} for
// the environment and ${PORT} and ${MODEL} expanded when the backend
// starts. The two differ in one way that matters: a file-wide llama-swap
// macro that uses another sees a model's own definition of that other,
// while hotswap reads a file-wide macro in the file's scope. The import
// copies such macros into the models that need them.

var (
	// lsRefRE is any ${...} in a value.
	lsRefRE = regexp.MustCompile(`\$\{([^}]*)\}`)
	// lsNameRE is what llama-swap takes for a macro reference.
	lsNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	// lsEnvRE is llama-swap's environment reference, ${env.NAME}.
	lsEnvRE = regexp.MustCompile(`^env\.([a-zA-Z_][a-zA-Z0-9_]*)$`)
	// hsNameRE is what hotswap allows a macro to be called.
	hsNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

// The names llama-swap fills in itself.
const (
	macroModelID = "MODEL_ID"
	macroPort    = "PORT"
	macroPID     = "PID"
)

// macro is one llama-swap macro definition.
type macro struct {
	name  string
	value any // string (${env.X} written ${env:X}), int, float64 or bool
	e     entry
}

// text is the macro's value as llama-swap puts it inside a longer string.
func (m macro) text() string { return fmt.Sprint(m.value) }

// readMacros reads a macros mapping, checking what llama-swap checks.
func (c *converter) readMacros(e entry) []macro {
	var out []macro
	for _, d := range c.p.entries(e.v, e.line(), e.path) {
		switch {
		case len(d.key) >= 64:
			c.p.addf(d.line(), d.path, "a macro name must be shorter than 64 characters")
			continue
		case !lsNameRE.MatchString(d.key):
			c.p.addf(d.line(), d.path, "invalid macro name %q (llama-swap allows letters, digits, _ and -)", d.key)
			continue
		case d.key == macroPort || d.key == macroPID || d.key == macroModelID:
			c.p.addf(d.line(), d.path, "%s is llama-swap's own macro: it may not be defined", d.key)
			continue
		}
		if isNull(d.v) || d.v.Kind != yaml.ScalarNode {
			c.p.addf(d.line(), d.path, "a macro must be a string, number or boolean, got %s", describe(d.v))
			continue
		}
		v := plainValue(d.v)
		if s, ok := v.(string); ok {
			s = envToHotswap(s)
			if strings.Contains(s, "${"+d.key+"}") {
				c.p.addf(d.line(), d.path, "the macro uses itself")
				continue
			}
			v = s
		}
		out = append(out, macro{name: d.key, value: v, e: d})
	}
	return out
}

// envToHotswap writes llama-swap's ${env.NAME} as hotswap's ${env:NAME}.
// The result holds no llama-swap macro reference for them, so later
// passes leave them alone, as llama-swap's own order does.
func envToHotswap(s string) string {
	if !strings.Contains(s, "${env.") {
		return s
	}
	return lsRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		if m := lsEnvRE.FindStringSubmatch(ref[2 : len(ref)-1]); m != nil {
			return "${env:" + m[1] + "}"
		}
		return ref
	})
}

// scope is the macros in force for a value: a model's (with its id) or
// the file's.
type scope struct {
	model  string  // "" for the file's scope
	list   []macro // in llama-swap's order: MODEL_ID, the file's, the model's new ones
	own    map[string]bool
	port   bool // the model's cmd uses ${PORT}
	static bool // set while reading a field outside cmd, proxy and env
}

// fileScope is the scope of values outside models.
func (c *converter) fileScope() *scope {
	return &scope{list: c.macros, own: map[string]bool{}}
}

// modelScope is llama-swap's merged list for a model: its id, the file's
// macros with the model's own replacing them in place, then the model's
// new ones.
func (c *converter) modelScope(id string, own []macro) *scope {
	list := []macro{{name: macroModelID, value: id}}
	list = append(list, c.macros...)
	s := &scope{model: id, own: map[string]bool{}}
	for _, m := range own {
		s.own[m.name] = true
		replaced := false
		for i := range list {
			if list[i].name == m.name {
				list[i] = m
				replaced = true
				break
			}
		}
		if !replaced {
			list = append(list, m)
		}
	}
	s.list = list
	return s
}

func (s *scope) lookup(name string) (macro, bool) {
	for _, m := range s.list {
		if m.name == name {
			return m, true
		}
	}
	return macro{}, false
}

// expand is llama-swap's substitution of one string value: the macros
// from the last to the first, then ${PORT} (left written as ${PORT}: hotswap
// fills it in at start). ${env:NAME} is left as it is.
func (s *scope) expand(v string) any {
	var x any = v
	for i := len(s.list) - 1; i >= 0; i-- {
		str, ok := x.(string)
		if !ok {
			return x
		}
		slug := "${" + s.list[i].name + "}"
		if str == slug {
			x = s.list[i].value
		} else if strings.Contains(str, slug) {
			x = strings.ReplaceAll(str, slug, s.list[i].text())
		}
	}
	return x
}

// reach returns the names a value uses, directly or through the macros it
// uses: macros, MODEL_ID, PORT and PID, and names defined nowhere.
func (s *scope) reach(v string) map[string]bool {
	seen := make(map[string]bool)
	var walk func(string)
	walk = func(v string) {
		for _, m := range lsRefRE.FindAllStringSubmatch(v, -1) {
			name := m[1]
			if !lsNameRE.MatchString(name) || seen[name] {
				continue
			}
			seen[name] = true
			if d, ok := s.lookup(name); ok {
				if str, isStr := d.value.(string); isStr {
					walk(str)
				}
			}
		}
	}
	walk(v)
	return seen
}

// check reports the names a value uses that llama-swap would not fill in.
func (c *converter) checkRefs(sc *scope, v string, line int, path string, allowPID bool) bool {
	ok := true
	for name := range sc.reach(v) {
		if _, defined := sc.lookup(name); defined {
			continue
		}
		switch {
		case name == macroPort && sc.model != "" && sc.port:
		case name == macroPID && allowPID:
		case name == macroPort && sc.model != "":
			c.p.addf(line, path, "${PORT} is only given to a model whose cmd uses it")
			ok = false
		default:
			c.p.addf(line, path, "unknown macro ${%s}", name)
			ok = false
		}
	}
	if ok {
		// llama-swap's order matters: a macro may only use those
		// defined before it. Whatever its expansion leaves is unknown.
		if str, isStr := sc.expand(v).(string); isStr {
			for _, m := range lsRefRE.FindAllStringSubmatch(str, -1) {
				name := m[1]
				if !lsNameRE.MatchString(name) || name == macroPort && sc.port || name == macroPID && allowPID {
					continue
				}
				c.p.addf(line, path, "${%s} is left unexpanded: a macro may only use macros defined before it", name)
				ok = false
			}
		}
	}
	return ok
}

// translate writes a llama-swap string for hotswap, keeping its macro
// references: ${env.NAME} becomes ${env:NAME}, a macro its hotswap name,
// MODEL_ID ${MODEL}, and a ${...} llama-swap would leave alone is escaped
// ($${...}) so that hotswap leaves it alone too.
func (c *converter) translate(v string) string {
	v = envToHotswap(v)
	if !strings.Contains(v, "${") {
		return v
	}
	return lsRefRE.ReplaceAllStringFunc(v, func(ref string) string {
		name := ref[2 : len(ref)-1]
		switch {
		case strings.HasPrefix(name, "env:"), name == macroPort:
			return ref
		case name == macroModelID:
			return "${MODEL}"
		case lsNameRE.MatchString(name):
			return "${" + c.hsName(name) + "}"
		}
		return "$" + ref
	})
}

// escapeExpanded writes a value llama-swap has expanded for hotswap:
// ${env:NAME} and ${PORT} stay, any other ${ is escaped.
func escapeExpanded(v string) string {
	if !strings.Contains(v, "${") {
		return v
	}
	return lsRefRE.ReplaceAllStringFunc(v, func(ref string) string {
		name := ref[2 : len(ref)-1]
		if strings.HasPrefix(name, "env:") || name == macroPort {
			return ref
		}
		return "$" + ref
	})
}

// hsName is a llama-swap macro's name in hotswap: the same, unless hotswap
// would not take it (a name starting with a digit or -, or hotswap's own
// MODEL), then with a prefix that keeps it apart from every other name.
func (c *converter) hsName(name string) string {
	if n, ok := c.renamed[name]; ok {
		return n
	}
	return name
}

// planNames chooses hotswap names for every macro in the file.
func (c *converter) planNames(all []string) {
	taken := make(map[string]bool)
	for _, n := range all {
		taken[n] = true
	}
	for _, n := range all {
		if _, done := c.renamed[n]; done || hsNameRE.MatchString(n) && n != "MODEL" && n != "PORT" {
			continue
		}
		base := "m_" + n
		cand := base
		for i := 2; taken[cand]; i++ {
			cand = fmt.Sprintf("%s_%d", base, i)
		}
		taken[cand] = true
		c.renamed[n] = cand
	}
}

// readEnvTyped fills in ${env.NAME} from this environment where a value
// must be read now (a number of seconds, say), as llama-swap would when it
// starts. A variable that is not set is a problem.
func (c *converter) readEnv(v string, line int, path string) (string, bool) {
	ok := true
	out := lsRefRE.ReplaceAllStringFunc(v, func(ref string) string {
		name, isEnv := strings.CutPrefix(ref[2:len(ref)-1], "env:")
		if !isEnv {
			return ref
		}
		val, set := os.LookupEnv(name)
		if !set {
			c.p.addf(line, path, "the environment variable %s is not set (the import reads it here: hotswap has no place for a reference)", name)
			ok = false
		}
		return val
	})
	return out, ok
}
