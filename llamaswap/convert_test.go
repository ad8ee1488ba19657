package llamaswap

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hotswap/hotswap/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// convertFile imports testdata/name.
func convertFile(t *testing.T, name string) *Result {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(src, Options{Source: name})
	if err != nil {
		t.Fatalf("import %s: %v", name, err)
	}
	return res
}

// parse reads what the import wrote as hotswap does.
func parse(t *testing.T, res *Result) *config.Config {
	t.Helper()
	cfg, err := config.Parse(res.YAML)
	if err != nil {
		t.Fatalf("hotswap refuses the import: %v\n%s", err, numbered(res.YAML))
	}
	return cfg
}

func numbered(b []byte) string {
	var out strings.Builder
	for i, l := range strings.Split(string(b), "\n") {
		fmt.Fprintf(&out, "%4d  %s\n", i+1, l)
	}
	return out.String()
}

// TestGolden keeps the whole import of the fixtures in view: a change in
// what the import writes shows in the diff of testdata/*.hotswap.yaml
// (go test ./llamaswap -update rewrites them).
func TestGolden(t *testing.T) {
	for _, name := range []string{"example.yaml", "legacy.yaml"} {
		t.Run(name, func(t *testing.T) {
			res := convertFile(t, name)
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".yaml")+".hotswap.yaml")
			if *update {
				if err := os.WriteFile(golden, res.YAML, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(res.YAML, want) {
				t.Errorf("the import of %s differs from %s (go test -update rewrites it):\n%s", name, golden, res.YAML)
			}
		})
	}
}

// TestExampleParses imports a fixture that uses every setting llama-swap's
// config.example.yaml shows, and checks what hotswap reads from the
// result, setting by setting.
func TestExampleParses(t *testing.T) {
	t.Setenv("MODELS", "/models")
	t.Setenv("TEAM_KEY", "sk-team")
	res := convertFile(t, "example.yaml")
	cfg := parse(t, res)

	if want := []string{"qwen3-30b", "coder-7b", "embed", "whisper"}; !reflect.DeepEqual(cfg.ModelIDs, want) {
		t.Errorf("models %v, want the file's order %v", cfg.ModelIDs, want)
	}
	if cfg.HealthTimeout != 300*time.Second || cfg.LogLevel != "debug" || cfg.StopTimeout != 20*time.Second ||
		cfg.Ports != (config.PortRange{First: 12000, Last: 12999}) {
		t.Errorf("file-wide: health %v, log %s, stop %v, ports %v", cfg.HealthTimeout, cfg.LogLevel, cfg.StopTimeout, cfg.Ports)
	}
	if want := []string{"sk-local-test-key", "sk-team"}; !reflect.DeepEqual(cfg.APIKeys, want) {
		t.Errorf("api keys %v, want %v", cfg.APIKeys, want)
	}

	q := cfg.Models["qwen3-30b"]
	wantCmd := []string{"/opt/llama.cpp/llama-server", "--host", "127.0.0.1", "--port", "${PORT}",
		"--model", "/models/gguf/qwen3-30b-a3b.gguf", "--ctx-size", "32768", "--jinja", "--temp", "0.6",
		"--cache-type-k", "q4_0"}
	if !reflect.DeepEqual(q.Cmd, wantCmd) {
		t.Errorf("qwen cmd\n got %q\nwant %q", q.Cmd, wantCmd)
	}
	if q.Info.Name != "Qwen3 30B A3B" || q.Info.Description != "Mixture of experts, thinking by default" ||
		q.UpstreamModel != "qwen3-30b-a3b" || q.Health != "/health" || q.TTL != 10*time.Minute ||
		q.StopTimeout != 30*time.Second || q.Parallel != 4 || !q.Preload || q.Unlisted {
		t.Errorf("qwen: %+v", q)
	}
	if want := []string{"LLAMA_ARG_THREADS=12", "HF_HOME=/models/hf"}; !reflect.DeepEqual(q.Env, want) {
		t.Errorf("qwen env %v, want %v", q.Env, want)
	}
	if want := []string{"gpt-4o"}; !reflect.DeepEqual(q.Aliases, want) {
		t.Errorf("qwen aliases %v, want %v (qwen-creative is a variant)", q.Aliases, want)
	}
	if want := []string{"text", "image", "tools"}; !reflect.DeepEqual(q.Info.Capabilities, want) {
		t.Errorf("capabilities %v, want %v", q.Info.Capabilities, want)
	}
	wantMeta := `{"temperature":0.6,"family":"qwen3-30b family","tags":["moe",0.6],"limits":{"context":32768,"label":"ctx 32768"}}`
	if string(q.Info.Metadata) != wantMeta {
		t.Errorf("metadata\n got %s\nwant %s", q.Info.Metadata, wantMeta)
	}
	checkParams(t, "qwen3-30b", q.Params, []string{"top_k", "min_p"}, map[string]string{
		"temperature":          "0.6",
		"chat_template_kwargs": `{"enable_thinking":true}`,
		"top_p":                "0.95",
	})
	if len(q.Variants) != 2 {
		t.Fatalf("variants %+v", q.Variants)
	}
	fast, creative := q.Variants[0], q.Variants[1]
	if fast.ID != "qwen3-30b-fast" || creative.ID != "qwen-creative" || !fast.Unlisted || !creative.Unlisted {
		t.Errorf("variants %+v %+v", fast, creative)
	}
	checkParams(t, fast.ID, fast.Params, []string{"top_k", "min_p"}, map[string]string{
		"temperature":          "0.6",
		"chat_template_kwargs": `{"enable_thinking":false}`,
		"top_p":                "0.95", // the model's, as the comment above the variant says
	})
	checkParams(t, creative.ID, creative.Params, []string{"top_k", "min_p"}, map[string]string{
		"temperature":          "1.1",
		"chat_template_kwargs": `{"enable_thinking":true}`,
		"top_p":                "0.95",
	})

	c := cfg.Models["coder-7b"]
	if !strings.Contains(strings.Join(c.Cmd, " "), "--ctx-size 8192 --jinja") || c.TTL != 15*time.Minute ||
		c.HealthTimeout != 300*time.Second {
		t.Errorf("coder: cmd %q ttl %v health %v", c.Cmd, c.TTL, c.HealthTimeout)
	}
	e := cfg.Models["embed"]
	if !e.Unlisted || e.Health != "/" || e.TTL != 0 || !e.Pinned || !e.Preload {
		t.Errorf("embed: %+v", e)
	}
	w := cfg.Models["whisper"]
	if want := []string{"docker", "run", "--rm", "--name", "${MODEL}", "-p", "${PORT}:8080", "whisper-server:latest"}; !reflect.DeepEqual(w.Cmd, want) {
		t.Errorf("whisper cmd %q, want %q", w.Cmd, want)
	}
	if w.TTL != 15*time.Minute || w.Parallel != 1 {
		t.Errorf("whisper ttl %v parallel %d", w.TTL, w.Parallel)
	}

	// What hotswap has no place for is kept, commented, with why.
	out := string(res.YAML)
	for _, kept := range []string{
		"# logTimeFormat: rfc3339", "# logToStdout: both", "# metricsMaxInMemory: 500", "# captureBuffer: 8",
		"# store:", "# ui:", "# performance:", "load_progress: reasoning  # sendLoadingState: true", "# includeAliasesInList: false",
		"# globalTTL: 900", "# upstream:", "# profiles:", "# selectors:", "# compat:", "# timeouts:",
		"# context: 32768", "# reranker: true", "# healthCheckTimeout: 60", "# cmdStop: docker stop ${MODEL_ID}",
		"# concurrencyLimit: 0", "load_progress: off  # sendLoadingState: false", "# hooks:", "# routing:", "# peers:", "# port: ${PORT}",
		"stripParams model", "# memory: {ram: 0GiB, vram: 0GiB}", "checkEndpoint: none",
	} {
		if !strings.Contains(out, kept) {
			t.Errorf("the import does not keep %q", kept)
		}
	}
	// (The header names the mark once.)
	if n := strings.Count(out, NotImportedMark) - 1; n != res.NotImported || n < 20 {
		t.Errorf("%d %q comments, Result says %d", n, NotImportedMark, res.NotImported)
	}
}

// checkParams compares a model's or variant's rules with JSON values.
func checkParams(t *testing.T, name string, p config.Params, strip []string, set map[string]string) {
	t.Helper()
	var gotStrip []string
	for _, s := range p.Strip {
		gotStrip = append(gotStrip, s.String())
	}
	if !reflect.DeepEqual(gotStrip, strip) {
		t.Errorf("%s: strip %v, want %v", name, gotStrip, strip)
	}
	got := map[string]string{}
	for _, r := range p.Set {
		got[r.Path.String()] = string(r.Value)
	}
	if !reflect.DeepEqual(got, set) {
		t.Errorf("%s: set %v, want %v", name, got, set)
	}
	if len(p.Default) != 0 {
		t.Errorf("%s: defaults %v", name, p.Default)
	}
}

// TestNothingDropped: every key the llama-swap fixtures hold is in the
// import, as the hotswap key that does the same or in a comment.
func TestNothingDropped(t *testing.T) {
	renamed := map[string]string{
		"healthCheckTimeout": "health_timeout", "logLevel": "log_level", "startPort": "ports",
		"unloadTimeout": "stop_timeout", "apiKeys": "api_keys", "checkEndpoint": "health",
		"useModelName": "upstream_model", "filters": "params", "setParams": "set",
		"setParamsByID": "variants", "concurrencyLimit": "parallel", "in": "capabilities",
		"out": "capabilities", "tools": "capabilities", "strip_params": "strip", "stripParams": "strip",
		"sendLoadingState": "load_progress",
	}
	for _, name := range []string{"example.yaml", "legacy.yaml"} {
		src, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		res := convertFile(t, name)
		var doc yaml.Node
		if err := yaml.Unmarshal(src, &doc); err != nil {
			t.Fatal(err)
		}
		var walk func(n *yaml.Node, path string)
		walk = func(n *yaml.Node, path string) {
			if n.Kind == yaml.DocumentNode {
				walk(n.Content[0], path)
				return
			}
			if n.Kind != yaml.MappingNode {
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				p := path + "." + k
				want, _, _ := strings.Cut(k, ".") // a dotted parameter may go into its object
				if r, ok := renamed[k]; ok {
					want = r
				}
				// A key is written as itself (models by id, macros by
				// name) or commented; setParamsByID's names expand.
				if !regexp.MustCompile(`(?m)^[ #]*"?`+regexp.QuoteMeta(want)+`"?:`).Match(res.YAML) &&
					!strings.Contains(k, "${") && !strings.HasPrefix(k, "1") {
					t.Errorf("%s: %s is nowhere in the import", name, p)
				}
				walk(n.Content[i+1], p)
			}
		}
		walk(&doc, "")
	}
}

// TestMacros: llama-swap's macro rules, written as hotswap's, give what
// llama-swap would have given.
func TestMacros(t *testing.T) {
	t.Setenv("NUM", "7")
	cases := []struct {
		name, src string
		model     string
		cmd       []string
		meta      string
		info      string
	}{{
		name: "a file-wide macro sees the model's own definition",
		src: `
macros:
  ctx: 4096
  args: --ctx ${ctx}
models:
  m:
    macros: {ctx: 8192}
    cmd: srv --port ${PORT} ${args}
  n:
    cmd: srv --port ${PORT} ${args}
`,
		model: "m", cmd: []string{"srv", "--port", "${PORT}", "--ctx", "8192"},
	}, {
		name: "names hotswap would not take are renamed",
		src: `
macros:
  1bit: --q4
  MODEL: /models/x.gguf
  -dash: --flag
models:
  m:
    cmd: srv --port ${PORT} ${1bit} -m ${MODEL} ${-dash}
`,
		model: "m", cmd: []string{"srv", "--port", "${PORT}", "--q4", "-m", "/models/x.gguf", "--flag"},
	}, {
		name: "a macro stands for several arguments, and MODEL_ID for the id",
		src: `
macros:
  srv: "srv --port ${PORT} --alias ${MODEL_ID}"
models:
  m:
    cmd: |
      ${srv}
      # a comment line in cmd
      --ctx 4096 \
      --jinja
    name: "${MODEL_ID} (served)"
    metadata:
      id: "${MODEL_ID}"
      n: "${num}"
      s: "${str}"
      env: ${env.NUM}
      quoted: "${env.NUM}"
      lit: "${not.a.macro}"
    macros: {num: 5, str: "5"}
`,
		model: "m", cmd: []string{"srv", "--port", "${PORT}", "--alias", "${MODEL}", "--ctx", "4096", "--jinja"},
		meta: `{"id":"m","n":5,"s":"5","env":7,"quoted":"7","lit":"${not.a.macro}"}`,
		info: "m (served)",
	}, {
		name: "a macro holding the environment",
		src: `
macros:
  home: ${env.NUM}
models:
  m:
    cmd: srv --port ${PORT} --threads ${home}
    ttl: ${home}
`,
		model: "m", cmd: []string{"srv", "--port", "${PORT}", "--threads", "7"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := Convert([]byte(c.src), Options{})
			if err != nil {
				t.Fatal(err)
			}
			cfg := parse(t, res)
			m := cfg.Models[c.model]
			if !reflect.DeepEqual(m.Cmd, c.cmd) {
				t.Errorf("cmd\n got %q\nwant %q\n%s", m.Cmd, c.cmd, res.YAML)
			}
			if c.meta != "" && string(m.Info.Metadata) != c.meta {
				t.Errorf("metadata\n got %s\nwant %s\n%s", m.Info.Metadata, c.meta, res.YAML)
			}
			if c.info != "" && m.Info.Name != c.info {
				t.Errorf("name %q, want %q", m.Info.Name, c.info)
			}
		})
	}
}

// TestBadInput: what llama-swap would refuse, or has no such key, is
// refused with the line and the key.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"not YAML", "models: [\n", []string{"not a YAML file", "line"}},
		{"empty", "# nothing\n", []string{"empty"}},
		{"two documents", "models: {}\n---\nmodels: {}\n", []string{"line 2", "second YAML document"}},
		{"a list", "- a\n", []string{"must be a mapping"}},
		{"unknown top-level key", "healthCheckTimout: 5\nmodels:\n  a:\n    cmd: x --port ${PORT}\n",
			[]string{"line 1", "healthCheckTimout", "did you mean healthCheckTimeout"}},
		{"unknown model key", "models:\n  a:\n    cmd: x --port ${PORT}\n    tll: 5\n",
			[]string{"line 4", "models.a.tll", "did you mean ttl"}},
		{"unknown filter", "models:\n  a:\n    cmd: x --port ${PORT}\n    filters:\n      setParam: {a: 1}\n",
			[]string{"line 5", "models.a.filters.setParam", "setParams"}},
		{"wrong type", "models:\n  a:\n    cmd: x --port ${PORT}\n    ttl: 5m\n",
			[]string{"line 4", "models.a.ttl", "whole number", `"5m"`}},
		{"bool", "models:\n  a:\n    cmd: x --port ${PORT}\n    unlisted: maybe\n",
			[]string{"line 4", "models.a.unlisted", "true or false"}},
		{"unknown macro", "models:\n  a:\n    cmd: x --port ${PORT} ${nope}\n",
			[]string{"line 3", "models.a.cmd", "unknown macro ${nope}"}},
		{"macro used before it is defined", "macros:\n  a: ${b}\n  b: x\nmodels:\n  m:\n    cmd: srv --port ${PORT} ${a}\n",
			[]string{"line 6", "defined before"}},
		{"no port", "models:\n  a:\n    cmd: some-server\n", []string{"line 3", "models.a.cmd", "${PORT}", "proxy"}},
		{"proxy port without cmd port", "models:\n  a:\n    cmd: some-server\n    proxy: http://127.0.0.1:${PORT}\n",
			[]string{"line 4", "models.a.proxy", "cmd uses it"}},
		{"duplicate alias", "models:\n  a:\n    cmd: x --port ${PORT}\n    aliases: [z]\n  b:\n    cmd: x --port ${PORT}\n    aliases: [z]\n",
			[]string{"line 7", "models.b.aliases[0]", "already used by model \"a\""}},
		{"key twice", "models:\n  a:\n    cmd: x --port ${PORT}\n  a:\n    cmd: y --port ${PORT}\n", []string{"line 4", "written twice"}},
		{"missing cmd", "models:\n  a:\n    ttl: 5\n", []string{"line 2", "missing cmd"}},
		{"no models", "logLevel: info\n", []string{"no models"}},
		{"unset variable in a number", "models:\n  a:\n    cmd: x --port ${PORT}\n    ttl: ${env.HOTSWAP_IMPORT_UNSET}\n",
			[]string{"line 4", "HOTSWAP_IMPORT_UNSET is not set"}},
		{"bad macro name", "macros:\n  a.b: x\nmodels:\n  a:\n    cmd: x --port ${PORT}\n", []string{"line 2", "invalid macro name"}},
		{"groups and routing", "groups: {g: {members: [a]}}\nrouting: {router: {use: group}}\nmodels:\n  a:\n    cmd: x --port ${PORT}\n",
			[]string{"routing.router", "both"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := Convert([]byte(c.src), Options{})
			if err == nil {
				t.Fatalf("accepted:\n%s", res.YAML)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			var lerr *Error
			if errors.As(err, &lerr) {
				for _, p := range lerr.Problems {
					if p.Msg == "" {
						t.Errorf("empty problem %+v", p)
					}
				}
			}
		})
	}
}

// TestEveryProblemAtOnce: a file with several mistakes gets them all.
func TestEveryProblemAtOnce(t *testing.T) {
	_, err := Convert([]byte("logLevl: info\nmodels:\n  a:\n    cmd: x --port ${PORT}\n    ttl: soon\n  b:\n    cdm: y\n"), Options{})
	var lerr *Error
	if !errors.As(err, &lerr) || len(lerr.Problems) < 3 {
		t.Fatalf("want at least 3 problems, got %v", err)
	}
	for i := 1; i < len(lerr.Problems); i++ {
		if lerr.Problems[i].Line < lerr.Problems[i-1].Line {
			t.Errorf("problems out of line order: %v", err)
		}
	}
}

func TestFold(t *testing.T) {
	node := func(s string) *yaml.Node {
		var d yaml.Node
		if err := yaml.Unmarshal([]byte(s), &d); err != nil {
			t.Fatal(err)
		}
		return d.Content[0]
	}
	r := func(key, v string) rule { return rule{key: key, path: strings.Split(key, "."), v: node(v)} }
	show := func(rules []rule) string {
		var parts []string
		for _, x := range rules {
			var v any
			x.v.Decode(&v)
			b, _ := json.Marshal(v)
			parts = append(parts, x.key+"="+string(b))
		}
		return strings.Join(parts, "; ")
	}
	cases := []struct {
		in   []rule
		want string
	}{
		{[]rule{r("a", "1"), r("b", "2")}, "a=1; b=2"},
		{[]rule{r("a", "1"), r("a", "2")}, "a=2"},
		{[]rule{r("a.b", "1"), r("a", "{c: 2}")}, `a={"c":2}`},
		{[]rule{r("a", "{c: 2}"), r("a.b", "1")}, `a={"b":1,"c":2}`},
		{[]rule{r("a", "{c: 2}"), r("a.c", "3")}, `a={"c":3}`},
		{[]rule{r("a", "5"), r("a.b.c", "1")}, `a={"b":{"c":1}}`},
	}
	for _, c := range cases {
		if got := show(fold(c.in)); got != c.want {
			t.Errorf("fold(%s) = %s, want %s", show(c.in), got, c.want)
		}
	}
}

// TestIncludeAliasesInList: with it, setParamsByID's names are listed,
// with the model's name and description as llama-swap showed them.
func TestIncludeAliasesInList(t *testing.T) {
	res, err := Convert([]byte(`
includeAliasesInList: true
models:
  m:
    cmd: srv --port ${PORT}
    name: Model M
    filters:
      setParamsByID:
        m-hot: {temperature: 1.5}
  hidden:
    unlisted: true
    cmd: srv --port ${PORT}
    filters:
      setParamsByID:
        hidden-hot: {temperature: 1.5}
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, res)
	v := cfg.Models["m"].Variants[0]
	if v.ID != "m-hot" || v.Unlisted || v.Info.Name != "Model M" {
		t.Errorf("variant %+v", v)
	}
	if h := cfg.Models["hidden"].Variants[0]; !h.Unlisted {
		t.Errorf("a variant of an unlisted model is listed: %+v", h)
	}
}

// TestLegacyGroups: the top-level groups of older files say the same as
// routing.router's: a persistent group's members are pinned, and each
// model's memory line says what its group did.
func TestLegacyGroups(t *testing.T) {
	res, err := Convert([]byte(`
groups:
  keep:
    persistent: true
    swap: false
    members: [a]
  rest:
    members: [b]
models:
  a:
    cmd: srv --port ${PORT}
  b:
    cmd: srv --port ${PORT}
  c:
    cmd: srv --port ${PORT}
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, res)
	if !cfg.Models["a"].Pinned || cfg.Models["b"].Pinned || cfg.Models["c"].Pinned {
		t.Errorf("pinned: a %v b %v c %v", cfg.Models["a"].Pinned, cfg.Models["b"].Pinned, cfg.Models["c"].Pinned)
	}
	for _, want := range []string{`group "keep" ran its members together`, `group "rest" ran one member at a time`,
		"ran it alone (its default group", "# groups:"} {
		if !strings.Contains(string(res.YAML), want) {
			t.Errorf("the import does not say %q:\n%s", want, res.YAML)
		}
	}
}
