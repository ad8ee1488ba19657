package config

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestMacros(t *testing.T) {
	t.Setenv("HS_TEST_MODELS", "/srv/models")
	t.Setenv("HS_TEST_KEY", "sk secret")
	c := mustParse(t, `
macros:
  server: "/opt/llama server/llama-server --port ${PORT}"
  dir: ${env:HS_TEST_MODELS}
  weights: ${dir}/default.gguf
  flags: -ngl 99 --ctx-size 8192
models:
  a:
    cmd: "'${server}' ${flags} -m ${weights} --api-key ${env:HS_TEST_KEY}"
    description: weights in ${dir}, $${x} as written
  b:
    macros:
      weights: ${dir}/b.gguf   # a model's own, over the file's
      both: ${weights} and ${flags}
    cmd: [bin/s, "${weights}", "--alias=${MODEL}", "--port", "${PORT}"]
    description: ${both}
`)
	a := c.Models["a"]
	wantA := []string{"/opt/llama server/llama-server --port ${PORT}", "-ngl", "99", "--ctx-size", "8192",
		"-m", "/srv/models/default.gguf", "--api-key", "sk secret"}
	if !slices.Equal(a.Cmd, wantA) {
		t.Errorf("a.cmd = %q\nwant     %q", a.Cmd, wantA)
	}
	// The log sees the variable as written, in the one argument it fills.
	wantLog := slices.Clone(wantA)
	wantLog[6], wantLog[8] = "${env:HS_TEST_MODELS}/default.gguf", "${env:HS_TEST_KEY}"
	if !slices.Equal(a.LogCmd, wantLog) {
		t.Errorf("a.LogCmd = %q\nwant        %q", a.LogCmd, wantLog)
	}
	if got := a.LogArgv(1234); got[0] != "/opt/llama server/llama-server --port 1234" || slices.Contains(got, "sk secret") {
		t.Errorf("LogArgv = %q", got)
	}
	if a.Info.Description != "weights in /srv/models, ${x} as written" {
		t.Errorf("a.description = %q", a.Info.Description)
	}
	b := c.Models["b"]
	if want := []string{"bin/s", "/srv/models/b.gguf", "--alias=${MODEL}", "--port", "${PORT}"}; !slices.Equal(b.Cmd, want) {
		t.Errorf("b.cmd = %q, want %q", b.Cmd, want)
	}
	if want := "/srv/models/b.gguf and -ngl 99 --ctx-size 8192"; b.Info.Description != want {
		t.Errorf("b.description = %q, want %q", b.Info.Description, want)
	}
}

func TestEnvAnywhere(t *testing.T) {
	t.Setenv("HS_TEST_SLOTS", "6")
	t.Setenv("HS_TEST_RAM", "2GiB")
	t.Setenv("HS_TEST_TRUE", "true")
	t.Setenv("HS_TEST_PORT", "127.0.0.1:9999")
	c := mustParse(t, `
listen: ${env:HS_TEST_PORT}
models:
  m:
    cmd: server --port ${PORT}
    parallel: ${env:HS_TEST_SLOTS}
    memory: {ram: "${env:HS_TEST_RAM}"}
    pinned: ${env:HS_TEST_TRUE}
    params:
      set:
        n: "${env:HS_TEST_SLOTS}"
        m: ${env:HS_TEST_SLOTS}
`)
	m := c.Models["m"]
	if c.Listen != "127.0.0.1:9999" || m.Parallel != 6 || m.Memory.RAM != 2<<30 || !m.Pinned {
		t.Errorf("listen %q, parallel %d, ram %d, pinned %v", c.Listen, m.Parallel, m.Memory.RAM, m.Pinned)
	}
	// Quoted, a variable is a string; plain, it is typed by its value.
	if got := paramsJSON(m.Params.Set); got != `n="6" m=6` {
		t.Errorf("set = %s", got)
	}
}

func TestMacroProblems(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown", "models:\n  m:\n    cmd: s ${PORT} ${nope}\n", "models.m.cmd: unknown macro ${nope}"},
		{"unknown in description", "models:\n  m:\n    cmd: s ${PORT}\n    description: ${nope}\n", "models.m.description: unknown macro ${nope}"},
		{"loop", "macros: {a: '${b}', b: 'x${a}'}\nmodels:\n  m:\n    cmd: s ${PORT} ${a}\n", "macros use each other in a loop: a -> b -> a"},
		{"self", "macros: {a: '${a}'}\nmodels:\n  m:\n    cmd: s ${PORT} ${a}\n", "macros.a: macros use each other in a loop: a -> a"},
		{"reserved", "macros: {PORT: '1'}\nmodels:\n  m:\n    cmd: s ${PORT}\n", `macros: "PORT" is hotswap's own placeholder`},
		{"bad name", "macros: {'a b': '1'}\nmodels:\n  m:\n    cmd: s ${PORT}\n", `macros: invalid macro name "a b"`},
		{"not a string", "macros: {a: [1]}\nmodels:\n  m:\n    cmd: s ${PORT}\n", "macros.a: must be a string, got a list"},
		{"file macro cannot see a model's", "macros: {a: '${w}'}\nmodels:\n  m:\n    macros: {w: x}\n    cmd: s ${PORT} ${a}\n", "macros.a: unknown macro ${w}"},
		{"missing variable", "models:\n  m:\n    cmd: s ${PORT}\n    name: ${env:HS_TEST_SURELY_UNSET}\n", "models.m.name: the environment variable HS_TEST_SURELY_UNSET is not set"},
		{"missing variable in cmd", "models:\n  m:\n    cmd: s ${PORT} ${env:HS_TEST_SURELY_UNSET}\n", "models.m.cmd: the environment variable HS_TEST_SURELY_UNSET is not set"},
		{"too large", "macros: {a: '${b}${b}${b}${b}${b}${b}${b}${b}', b: '${c}${c}${c}${c}${c}${c}${c}${c}', c: '${d}${d}${d}${d}${d}${d}${d}${d}', " +
			"d: '${e}${e}${e}${e}${e}${e}${e}${e}', e: '${f}${f}${f}${f}${f}${f}${f}${f}', f: '${g}${g}${g}${g}${g}${g}${g}${g}', g: 0123456789}\n" +
			"models:\n  m:\n    cmd: s ${PORT} ${a}\n", "macros.a: expands to more than 1MiB"},
		{"escaped in cmd", "models:\n  m:\n    cmd: s ${PORT} $${x}\n", `models.m.cmd: unknown placeholder "${x}"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.yaml)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q\ndo not contain %q", got, tc.want)
			}
		})
	}
}

// paramsJSON writes rules as path=value, for comparing.
func paramsJSON(ps []Param) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Path.String()+"="+string(p.Value))
	}
	return strings.Join(out, " ")
}

func TestParams(t *testing.T) {
	c := mustParse(t, `
models:
  m:
    cmd: s ${PORT}
    params:
      set:
        temperature: 0.6
        chat_template_kwargs.enable_thinking: true
        stop: ["</s>", "\n\n"]
        logit_bias: {"50256": -100}
        seed: 0x10
        note: null
        text: 'it''s <b>'
      default: {top_p: 0.95, max_tokens: 512}
      strip: [frequency_penalty, chat_template_kwargs.foo]
`)
	ps := c.Models["m"].Params
	wantSet := `temperature=0.6 chat_template_kwargs.enable_thinking=true stop=["</s>","\n\n"] logit_bias={"50256":-100} seed=16 note=null text="it's <b>"`
	if got := strings.ReplaceAll(paramsJSON(ps.Set), `\u003c`, "<"); strings.ReplaceAll(got, `\u003e`, ">") != wantSet {
		t.Errorf("set = %s\nwant  %s", got, wantSet)
	}
	for _, r := range ps.Set {
		if !json.Valid(r.Value) {
			t.Errorf("%s: %s is not JSON", r.Path, r.Value)
		}
	}
	if got := paramsJSON(ps.Default); got != "top_p=0.95 max_tokens=512" {
		t.Errorf("default = %s", got)
	}
	if want := []ParamPath{{"frequency_penalty"}, {"chat_template_kwargs", "foo"}}; !reflect.DeepEqual(ps.Strip, want) {
		t.Errorf("strip = %q", ps.Strip)
	}
	if c.Models["m"].Params.Empty() || !(&Params{}).Empty() {
		t.Error("Empty is wrong")
	}

	for _, tc := range []struct{ name, params, want string }{
		{"model", "{set: {model: x}}", `models.m.params.set: "model": the model a request names is hotswap's to route by; to send the backend another name, set upstream_model`},
		{"stream", "{default: {stream: true}}", `models.m.params.default: "stream": whether a request streams is the client's to say`},
		{"stream strip", "{strip: [stream.x]}", `models.m.params.strip[0]: "stream.x"`},
		{"empty segment", "{set: {a..b: 1}}", `models.m.params.set: invalid key "a..b"`},
		{"set and default", "{set: {a: 1}, default: {a: 2}}", "models.m.params: a is both set and default: say which"},
		{"inside", "{set: {a: {b: 1}}, default: {a.b.c: 2}}", "models.m.params: a.b.c (default) lies inside a (set)"},
		{"unknown key", "{sett: {a: 1}}", `models.m.params: unknown key "sett" (did you mean "set"?)`},
		{"infinity", "{set: {a: .inf}}", "models.m.params.set.a: .inf has no JSON form"},
		{"strip not a list", "{strip: a}", "models.m.params.strip: must be a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, "models:\n  m:\n    cmd: s ${PORT}\n    params: "+tc.params+"\n")
			if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, tc.want) }) {
				t.Errorf("problems %q\ndo not start with %q", got, tc.want)
			}
		})
	}
}

func TestVariants(t *testing.T) {
	c := mustParse(t, `
models:
  qwen:
    cmd: s ${PORT}
    aliases: [q]
    upstream_model: Qwen/Qwen3-8B
    name: Qwen3 8B
    capabilities: [text, tools]
    metadata: {family: qwen3, context: 32768}
    params:
      set: {temperature: 0.6, chat_template_kwargs.enable_thinking: true, top_k: 20}
      default: {top_p: 0.95}
      strip: [logit_bias]
    variants:
      qwen-fast:
        aliases: [fast]
        name: Qwen3 8B, no thinking
        params:
          set: {chat_template_kwargs: {enable_thinking: false}, temperature: 0.7}
          strip: [top_k]
      qwen-plain:
      qwen-hidden:
        unlisted: true
        capabilities: [text]
        metadata: {note: hidden}
`)
	q := c.Models["qwen"]
	if q.UpstreamModel != "Qwen/Qwen3-8B" || len(q.Variants) != 3 {
		t.Fatalf("upstream_model %q, %d variants", q.UpstreamModel, len(q.Variants))
	}
	for name, want := range map[string]string{"qwen": "", "q": "", "qwen-fast": "qwen-fast", "fast": "qwen-fast",
		"qwen-plain": "qwen-plain", "qwen-hidden": "qwen-hidden"} {
		m, v, ok := c.Lookup(name)
		got := ""
		if v != nil {
			got = v.ID
		}
		if !ok || m != q || got != want {
			t.Errorf("Lookup(%q) = %v, %q, %v; want qwen, %q", name, m, got, ok, want)
		}
		if m, ok := c.Resolve(name); !ok || m != q {
			t.Errorf("Resolve(%q) = %v, %v", name, m, ok)
		}
	}
	if _, _, ok := c.Lookup("nope"); ok {
		t.Error("Lookup(nope) found something")
	}

	fast := q.Variants[0]
	// The variant's temperature and whole chat_template_kwargs replace the
	// model's; the model's top_k gives way to the variant's strip.
	if got := paramsJSON(fast.Params.Set); got != `chat_template_kwargs={"enable_thinking":false} temperature=0.7` {
		t.Errorf("qwen-fast set = %s", got)
	}
	if got := paramsJSON(fast.Params.Default); got != "top_p=0.95" {
		t.Errorf("qwen-fast default = %s", got)
	}
	if want := []ParamPath{{"logit_bias"}, {"top_k"}}; !reflect.DeepEqual(fast.Params.Strip, want) {
		t.Errorf("qwen-fast strip = %q", fast.Params.Strip)
	}
	if fast.Info.Name != "Qwen3 8B, no thinking" || !slices.Equal(fast.Info.Capabilities, []string{"text", "tools"}) ||
		string(fast.Info.Metadata) != `{"family":"qwen3","context":32768}` {
		t.Errorf("qwen-fast info = %+v (%s)", fast.Info, fast.Info.Metadata)
	}
	plain := q.Variants[1]
	if !reflect.DeepEqual(plain.Params, q.Params) || plain.Info.Name != "" {
		t.Errorf("qwen-plain = %+v", plain)
	}
	hidden := q.Variants[2]
	if !hidden.Unlisted || string(hidden.Info.Metadata) != `{"note":"hidden"}` || !slices.Equal(hidden.Info.Capabilities, []string{"text"}) {
		t.Errorf("qwen-hidden = %+v", hidden)
	}
	if q.RequestParams(nil) != &q.Params || q.RequestParams(fast) != &fast.Params {
		t.Error("RequestParams picks the wrong rules")
	}
	// A mode may name a variant: it loads the model.
	c = mustParse(t, "models:\n  m:\n    cmd: s ${PORT}\n    variants: {v: }\nmodes:\n  x: [v]\n")
	if !slices.Equal(c.Modes["x"], []string{"m"}) {
		t.Errorf("mode x = %q", c.Modes["x"])
	}
}

func TestVariantProblems(t *testing.T) {
	base := "models:\n  a:\n    cmd: s ${PORT}\n    aliases: [x]\n  b:\n    cmd: s ${PORT}\n    variants:\n"
	for _, tc := range []struct{ name, variants, want string }{
		{"model's id", "      a: {}\n", `models.b.variants: variant "a" is already the id of model "a"`},
		{"own model's id", "      b: {}\n", `models.b.variants: variant "b" is already the id of model "b"`},
		{"an alias", "      x: {}\n", `models.b.variants: variant "x" is already used by model "a"`},
		{"alias clash", "      v: {aliases: [x]}\n", `models.b.variants.v.aliases: alias "x" is already used by model "a"`},
		{"alias of two variants", "      v: {aliases: [y]}\n      w: {aliases: [y]}\n", `models.b.variants.w.aliases: alias "y" is already used by variant "v"`},
		{"bad id", "      'v w': {}\n", `models.b.variants: invalid variant id "v w"`},
		{"unknown key", "      v: {parms: {}}\n", `models.b.variants.v: unknown key "parms" (did you mean "params"?)`},
		{"capability", "      v: {capabilities: [text, imag]}\n", `models.b.variants.v.capabilities[1]: unknown capability "imag" (did you mean image?)`},
		{"capability twice", "      v: {capabilities: [text, text]}\n", `models.b.variants.v.capabilities[1]: "text" is listed twice`},
		{"metadata", "      v: {metadata: [1]}\n", "models.b.variants.v.metadata: must be a mapping, got a list"},
		{"variant params", "      v: {params: {set: {model: m}}}\n", `models.b.variants.v.params.set: "model"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, base+tc.variants)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, tc.want) }) {
				t.Errorf("problems %q\ndo not start with %q", got, tc.want)
			}
		})
	}
	got := problems(t, "models:\n  m:\n    cmd: s ${PORT}\n    upstream_model: 'a b'\n    unlisted: 1\n")
	for _, want := range []string{`models.m.upstream_model: invalid model name "a b"`, `models.m.unlisted: must be true or false`} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
}

// Shaping requests is the proxy's: changing it never restarts a backend.
func TestShapeChangesNeedNoRestart(t *testing.T) {
	old := mustParse(t, "models:\n  m:\n    cmd: s ${PORT}\n")
	next := mustParse(t, "models:\n  m:\n    cmd: s ${PORT}\n    upstream_model: x\n    params: {set: {a: 1}}\n    unlisted: true\n    variants: {v: }\n")
	d := Compare(old, next)
	if len(d.Restart) != 0 || !slices.Equal(d.Changed, []string{"m"}) {
		t.Errorf("diff = %+v", d)
	}
}
