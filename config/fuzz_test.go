package config

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSize: any input is a size or an error, never a panic; a size
// is never negative, the unit's case does not matter, and a size written
// back in bytes reads the same.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "123", "6GiB", "512MiB", "1.5GiB", "1GB", " 300 mb ", "9223372036854775807",
		"9223372036854775808", "8EiB", "-1", "1e3", ".5KiB", "1..2", "KiB", "", "0.0000001B", "99999999999TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q: %d", s, n)
		}
		if m, err := ParseSize(strings.ToUpper(s)); err != nil || m != n {
			t.Fatalf("%q is %d, upper case %d, %v", s, n, m, err)
		}
		if m, err := ParseSize(strconv.FormatInt(n, 10) + "B"); err != nil || m != n {
			t.Fatalf("%q is %d, but %dB reads %d, %v", s, n, n, m, err)
		}
	})
}

// quoteArgs writes args as a shell would need them: each in single
// quotes, and a single quote inside one closed, escaped and reopened.
func quoteArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

// FuzzSplitArgs: any input is words or an error, never a panic; and words
// quoted as a shell would need them split back into the same words.
func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{`llama-server -m /models/x.gguf --port ${PORT}`, `a'b c'd`, `"" x`, `"a\"b" 'c\d'`,
		`a\ b`, "a\\\nb", `'unterminated`, `"unterminated`, `trailing\`, `"$x" '${MODEL}'`, "\t a \n b ", `|>;&`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitArgs(s)
		if err != nil {
			return
		}
		back, err := SplitArgs(quoteArgs(args))
		if err != nil || !slices.Equal(back, args) {
			t.Fatalf("%q split into %q; quoted again %q it splits into %q, %v", s, args, quoteArgs(args), back, err)
		}
	})
}

// FuzzParse: any file is a configuration or a list of problems, never a
// panic; a configuration that loads is whole: every model listed once,
// found by its id and its aliases, with a command and a parallel setting.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	if b, err := os.ReadFile("../config.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"models: {a: {cmd: x, aliases: [b]}, b: {cmd: y}}",
		"models:\n  m:\n    cmd: 'a b' \n    memory: {ram: 1GiB, vram: -1}\n",
		"models: {m: {cmd: \"x ${PORT}\", parallel: 0, ttl: 5s}}\nmodes: {a: [m], b: [n]}",
		"listen: [1]\nmodels: {}", "a: &x {b: *x}", "models: {m: {cmd: x, unknown: 1}}",
		"memory: {limit_ram: 1.5GiB, reserve_ram: 10GB}\nmodels: {m: {cmd: x}}",
		"macros: {a: '${b} x', b: '-y'}\nmodels: {m: {macros: {c: '${a}'}, cmd: 's ${c} ${PORT}', description: '$${a}'}}",
		"models: {m: {cmd: x, params: {set: {a.b: [1, {c: null}]}, default: {d: 1}, strip: [e.f]}, variants: {v: {aliases: [w], params: {set: {a: 2}}}}}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) && len(ve.Problems) == 0 {
				t.Fatalf("a validation error without problems: %v", err)
			}
			return
		}
		if len(c.ModelIDs) != len(c.Models) {
			t.Fatalf("%d ids, %d models", len(c.ModelIDs), len(c.Models))
		}
		for _, id := range c.ModelIDs {
			m, ok := c.Resolve(id)
			if !ok || m.ID != id || len(m.Cmd) == 0 || m.Parallel < 1 {
				t.Fatalf("model %q: %+v, %v", id, m, ok)
			}
			for _, a := range m.Aliases {
				if r, ok := c.Resolve(a); !ok || r.ID != id {
					t.Fatalf("alias %q of %q resolves to %+v", a, id, r)
				}
			}
			for _, v := range m.Variants {
				for _, name := range append([]string{v.ID}, v.Aliases...) {
					if r, rv, ok := c.Lookup(name); !ok || r.ID != id || rv != v {
						t.Fatalf("variant name %q of %q looks up %+v, %+v", name, id, r, rv)
					}
				}
				for _, ps := range []*Params{&m.Params, &v.Params} {
					for _, p := range append(ps.Set, ps.Default...) {
						if !json.Valid(p.Value) {
							t.Fatalf("%s: %q is not JSON", p.Path, p.Value)
						}
					}
				}
			}
		}
	})
}
