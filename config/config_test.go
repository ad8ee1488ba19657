package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid configuration; tests append to it.
const minimal = `
models:
  m:
    cmd: server --port ${PORT}
`

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v\n--- input:\n%s", err, yaml)
	}
	return c
}

// problems parses yaml, expects a *ValidationError and returns its problems.
func problems(t *testing.T, yaml string) []string {
	t.Helper()
	_, err := Parse([]byte(yaml))
	if err == nil {
		t.Fatalf("Parse succeeded, want an error\n--- input:\n%s", yaml)
	}
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %T %q is not a *ValidationError", err, err)
	}
	if got := verr.Error(); got != strings.Join(verr.Problems, "\n") {
		t.Errorf("Error() = %q, want the problems one per line", got)
	}
	return verr.Problems
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"123", 123},
		{"123B", 123},
		{"10KiB", 10 << 10},
		{"512MiB", 512 << 20},
		{"6GiB", 6 << 30},
		{"2TiB", 2 << 40},
		{"10KB", 10_000},
		{"300MB", 300_000_000},
		{"1GB", 1_000_000_000},
		{"1TB", 1_000_000_000_000},
		{"6gib", 6 << 30},
		{"6GIB", 6 << 30},
		{"1.5GiB", 3 << 29},
		{"0.5KB", 500},
		{"1.0000001B", 1}, // rounded down
		{" 6 GiB ", 6 << 30},
		{"9223372036854775807", 1<<63 - 1},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}

	bad := []string{"", "GiB", "-1", "-1GiB", "6XB", "6G", "6Gi", "1.2.3MB", "abc", "1e9", "0x10",
		"9223372036854775808", "9000000TiB", "6 Gi B"}
	for _, in := range bad {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n ", nil},
		{"a", []string{"a"}},
		{"  a   b\tc\nd  ", []string{"a", "b", "c", "d"}},
		{`llama-server -m /models/x.gguf --port ${PORT}`, []string{"llama-server", "-m", "/models/x.gguf", "--port", "${PORT}"}},
		{`a 'b c' d`, []string{"a", "b c", "d"}},
		{`a "b c" d`, []string{"a", "b c", "d"}},
		{`'it''s'`, []string{"its"}},
		{`a'b c'd`, []string{"ab cd"}},
		{`"" ''`, []string{"", ""}},
		{`x ""`, []string{"x", ""}},
		{`'a\b "c"'`, []string{`a\b "c"`}},
		{`"a\"b" "c\\d" "\$x" "\q"`, []string{`a"b`, `c\d`, `$x`, `\q`}},
		{`a\ b c\"d \'e\\`, []string{"a b", `c"d`, `'e\`}},
		{"a \\\nb", []string{"a", "b"}},
		{"a\\\nb", []string{"ab"}},
		{"\"a\\\nb\"", []string{"ab"}},
		{`--prompt "${MODEL} says hi" --json '{"a": 1}'`, []string{"--prompt", "${MODEL} says hi", "--json", `{"a": 1}`}},
		{`a | b > c`, []string{"a", "|", "b", ">", "c"}},
		{`héllo "wörld ñ"`, []string{"héllo", "wörld ñ"}},
	}
	for _, tt := range tests {
		got, err := SplitArgs(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}

	bad := []struct{ in, want string }{
		{`a 'b`, "unterminated single quote"},
		{`a "b`, "unterminated double quote"},
		{`"a\"`, "unterminated double quote"},
		{`a\`, "trailing backslash"},
	}
	for _, tt := range bad {
		got, err := SplitArgs(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	want := Default()
	m := c.Models["m"]
	if c.Listen != want.Listen || c.LogLevel != "info" || c.APIKeys != nil ||
		c.MaxBody != 64<<20 || c.Ports != (PortRange{10000, 10999}) ||
		c.HealthTimeout != 120*time.Second || c.StopTimeout != 10*time.Second || c.UpstreamKeepalive != 3*time.Second {
		t.Errorf("top-level defaults wrong: %+v", c)
	}
	if c.Listen != "127.0.0.1:8080" {
		t.Errorf("Listen = %q", c.Listen)
	}
	wantMem := Memory{ReserveRAM: 1 << 30, ReserveVRAM: 512 << 20, CooldownMax: 10 * time.Second}
	if c.Memory != wantMem {
		t.Errorf("Memory = %+v, want %+v", c.Memory, wantMem)
	}
	wantSched := Scheduling{Policy: "batch", MaxWait: 30 * time.Second, IdleGrace: 100 * time.Millisecond, DrainTimeout: 5 * time.Minute,
		QueueSize: 256, QueueTimeout: 5 * time.Minute, StreamKeepalive: 2 * time.Second, LoadProgress: LoadProgressOff, Eviction: EvictCost}
	if c.Scheduling != wantSched {
		t.Errorf("Scheduling = %+v, want %+v", c.Scheduling, wantSched)
	}
	wantServer := Server{HeaderTimeout: 10 * time.Second, BodyMinRate: 64 << 10, IdleTimeout: 2 * time.Minute,
		StallTimeout: time.Minute, ShutdownGrace: 10 * time.Second, BodyMemory: 256 << 20, SessionTTL: 24 * time.Hour}
	if c.Server != wantServer {
		t.Errorf("Server = %+v, want %+v", c.Server, wantServer)
	}
	wantModel := &Model{
		ID:                "m",
		Cmd:               []string{"server", "--port", "${PORT}"},
		LogCmd:            []string{"server", "--port", "${PORT}"},
		Proxy:             "http://127.0.0.1:${PORT}",
		Health:            "/health",
		Kind:              "llm",
		GPU:               -1,
		Parallel:          1,
		HealthTimeout:     120 * time.Second,
		StopTimeout:       10 * time.Second,
		UpstreamKeepalive: 3 * time.Second,
		LoadProgress:      LoadProgressOff,
	}
	if !reflect.DeepEqual(m, wantModel) {
		t.Errorf("model = %+v\nwant    %+v", m, wantModel)
	}
	if len(c.Modes) != 0 || c.Modes == nil {
		t.Errorf("Modes = %#v, want an empty map", c.Modes)
	}
	if !reflect.DeepEqual(c.ModelIDs, []string{"m"}) {
		t.Errorf("ModelIDs = %q", c.ModelIDs)
	}
}

func TestFullConfig(t *testing.T) {
	c := mustParse(t, `
listen: 0.0.0.0:9090
log_level: debug
api_keys: [sk-one, 12345]
admin_keys: [admin-1]
cors_origins: ["http://localhost:3000", "*"]
max_body: 1MiB
ports: 20000-20009
health_timeout: 1m
stop_timeout: 3s
upstream_keepalive: 4s
server:
  max_conns: 500
  max_conns_per_ip: 50
  header_timeout: 5s
  body_min_rate: 1MiB
  idle_timeout: 30s
  stall_timeout: 0
  shutdown_grace: 1m
memory:
  reserve_ram: 2GiB
  reserve_vram: 1073741824
  limit_ram: 32GB
  cooldown_max: 0
  state_file: /var/lib/hotswap/state.json
scheduling:
  policy: fifo
  max_wait: 1m30s
  idle_grace: 0s
  drain_timeout: 20s
  queue_size: 8
  queue_timeout: 1h
  stream_keepalive: 0
  eviction: cost
models:
  llama-8b:
    cmd: llama-server -m /models/llama-8b.gguf --port ${PORT} --alias '${MODEL}'
    proxy: http://127.0.0.1:${PORT}/
    health: /v1/models
    aliases: [gpt-4o-mini, small]
    env: [LLAMA_ARG_THREADS=8, EMPTY=]
    kind: llm
    memory: {ram: 1GiB, vram: 6GiB}
    gpu: 0
    parallel: 4
    ttl: 10m
    pinned: true
    preload: true
    health_timeout: 5m
    stop_timeout: 30s
    upstream_keepalive: 0
  whisper:
    cmd: [whisper-server, --port, "${PORT}", "--model path"]
    kind: stt
    ttl: 0
  fixed:
    cmd: remote-thing
    proxy: https://example.com:8443/base
modes:
  chat: [llama-8b, whisper, small]
  none: []
`)
	if c.Listen != "0.0.0.0:9090" || c.LogLevel != "debug" || c.MaxBody != 1<<20 ||
		c.Ports != (PortRange{20000, 20009}) || c.HealthTimeout != time.Minute || c.StopTimeout != 3*time.Second {
		t.Errorf("top level = %+v", c)
	}
	if !reflect.DeepEqual(c.APIKeys, []string{"sk-one", "12345"}) {
		t.Errorf("APIKeys = %q", c.APIKeys)
	}
	if !reflect.DeepEqual(c.AdminKeys, []string{"admin-1"}) || !reflect.DeepEqual(c.CORSOrigins, []string{"http://localhost:3000", "*"}) {
		t.Errorf("AdminKeys %q, CORSOrigins %q", c.AdminKeys, c.CORSOrigins)
	}
	wantMem := Memory{ReserveRAM: 2 << 30, ReserveVRAM: 1 << 30, LimitRAM: 32e9, StateFile: "/var/lib/hotswap/state.json"}
	if c.Memory != wantMem {
		t.Errorf("Memory = %+v, want %+v", c.Memory, wantMem)
	}
	wantServer := Server{MaxConns: 500, MaxConnsPerIP: 50, HeaderTimeout: 5 * time.Second, BodyMinRate: 1 << 20,
		IdleTimeout: 30 * time.Second, ShutdownGrace: time.Minute, BodyMemory: 256 << 20, SessionTTL: 24 * time.Hour}
	if c.Server != wantServer {
		t.Errorf("Server = %+v, want %+v", c.Server, wantServer)
	}
	wantSched := Scheduling{Policy: "fifo", MaxWait: 90 * time.Second, DrainTimeout: 20 * time.Second, QueueSize: 8,
		QueueTimeout: time.Hour, StreamKeepalive: 0, LoadProgress: LoadProgressOff, Eviction: EvictCost}
	if c.Scheduling != wantSched {
		t.Errorf("Scheduling = %+v, want %+v", c.Scheduling, wantSched)
	}

	want := &Model{
		ID:            "llama-8b",
		Cmd:           []string{"llama-server", "-m", "/models/llama-8b.gguf", "--port", "${PORT}", "--alias", "${MODEL}"},
		LogCmd:        []string{"llama-server", "-m", "/models/llama-8b.gguf", "--port", "${PORT}", "--alias", "${MODEL}"},
		Proxy:         "http://127.0.0.1:${PORT}/",
		Health:        "/v1/models",
		Aliases:       []string{"gpt-4o-mini", "small"},
		Env:           []string{"LLAMA_ARG_THREADS=8", "EMPTY="},
		Kind:          "llm",
		Memory:        Need{RAM: 1 << 30, VRAM: 6 << 30},
		GPU:           0,
		Parallel:      4,
		TTL:           10 * time.Minute,
		Pinned:        true,
		Preload:       true,
		HealthTimeout: 5 * time.Minute,
		StopTimeout:   30 * time.Second,
		// UpstreamKeepalive 0: set to 0, not defaulted.
		LoadProgress: LoadProgressOff,
	}
	if got := c.Models["llama-8b"]; !reflect.DeepEqual(got, want) {
		t.Errorf("llama-8b = %+v\nwant       %+v", got, want)
	}
	w := c.Models["whisper"]
	if !reflect.DeepEqual(w.Cmd, []string{"whisper-server", "--port", "${PORT}", "--model path"}) ||
		w.Kind != "stt" || w.TTL != 0 || w.HealthTimeout != time.Minute || w.StopTimeout != 3*time.Second ||
		w.UpstreamKeepalive != 4*time.Second {
		t.Errorf("whisper = %+v", w)
	}
	if f := c.Models["fixed"]; f.NeedsPort() {
		t.Errorf("fixed.NeedsPort() = true, want false")
	}
	wantModes := map[string][]string{"chat": {"llama-8b", "whisper"}, "none": {}}
	if !reflect.DeepEqual(c.Modes, wantModes) {
		t.Errorf("Modes = %q, want %q", c.Modes, wantModes)
	}
}

func TestEndpointPicker(t *testing.T) {
	c := mustParse(t, minimal+"listen: 127.0.0.1:8080\nendpoint_picker:\n  open: true\n  listen: 10.0.0.5:9400\n  leave: 3s\n")
	want := EndpointPicker{Open: true, Listen: "10.0.0.5:9400", Leave: 3 * time.Second}
	if c.EndpointPicker != want {
		t.Errorf("endpoint_picker = %+v, want %+v", c.EndpointPicker, want)
	}
	if d := mustParse(t, minimal); d.EndpointPicker != (EndpointPicker{}) {
		t.Errorf("default endpoint_picker = %+v, want all off", d.EndpointPicker)
	}
	// Port 0 is a free port for each listener, never the same one.
	mustParse(t, minimal+"listen: 127.0.0.1:0\nendpoint_picker: {listen: 127.0.0.1:0}\n")
	// A listener of its own is built at start: a reload cannot move it.
	next := mustParse(t, minimal+"endpoint_picker: {listen: 10.0.0.5:9401, leave: 1s}\n")
	if d := Compare(c, next); !slices.Contains(d.NeedsRestart, "endpoint_picker.listen") {
		t.Errorf("a changed endpoint_picker.listen needs no restart: %+v", d.NeedsRestart)
	}
}

func TestModelIDsKeepFileOrder(t *testing.T) {
	c := mustParse(t, `
models:
  zeta:  {cmd: "z ${PORT}"}
  alpha: {cmd: "a ${PORT}"}
  mid:   {cmd: "m ${PORT}"}
  beta:  {cmd: "b ${PORT}"}
`)
	want := []string{"zeta", "alpha", "mid", "beta"}
	if !reflect.DeepEqual(c.ModelIDs, want) {
		t.Errorf("ModelIDs = %q, want %q", c.ModelIDs, want)
	}
	if len(c.Models) != len(want) {
		t.Errorf("len(Models) = %d", len(c.Models))
	}
}

func TestExpand(t *testing.T) {
	m := &Model{
		ID:    "llama-8b",
		Cmd:   []string{"server", "--port=${PORT}", "--name", "${MODEL}", "${PORT}${PORT}"},
		Proxy: "http://127.0.0.1:${PORT}/",
		Env:   []string{"PORT=${PORT}", "NAME=${MODEL}", "PLAIN=1"},
	}
	argv, env, upstream := m.Expand(10042)
	if want := []string{"server", "--port=10042", "--name", "llama-8b", "1004210042"}; !reflect.DeepEqual(argv, want) {
		t.Errorf("argv = %q, want %q", argv, want)
	}
	if want := []string{"PORT=10042", "NAME=llama-8b", "PLAIN=1"}; !reflect.DeepEqual(env, want) {
		t.Errorf("env = %q, want %q", env, want)
	}
	if upstream != "http://127.0.0.1:10042" {
		t.Errorf("upstream = %q", upstream)
	}
	if m.Cmd[1] != "--port=${PORT}" || m.Env[0] != "PORT=${PORT}" {
		t.Errorf("Expand changed the model: %+v", m)
	}

	// A Model built by hand without a proxy gets the default.
	bare := &Model{ID: "x", Cmd: []string{"x"}}
	if _, env, up := bare.Expand(7); up != "http://127.0.0.1:7" || env != nil {
		t.Errorf("bare Expand = env %q, upstream %q", env, up)
	}
	if !bare.NeedsPort() {
		t.Errorf("bare.NeedsPort() = false; the default proxy uses ${PORT}")
	}
}

func TestNeedsPort(t *testing.T) {
	tests := []struct {
		m    Model
		want bool
	}{
		{Model{Cmd: []string{"s", "${PORT}"}, Proxy: "http://h:1"}, true},
		{Model{Cmd: []string{"s"}, Proxy: "http://h:1", Env: []string{"P=${PORT}"}}, true},
		{Model{Cmd: []string{"s"}, Proxy: "http://h:${PORT}"}, true},
		{Model{Cmd: []string{"s", "${MODEL}"}, Proxy: "http://h:1"}, false},
	}
	for i, tt := range tests {
		if got := tt.m.NeedsPort(); got != tt.want {
			t.Errorf("%d: NeedsPort() = %v, want %v", i, got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	c := mustParse(t, `
models:
  llama-8b: {cmd: "l ${PORT}", aliases: [gpt-4o-mini, gpt-3.5-turbo]}
  whisper:  {cmd: "w ${PORT}", aliases: [whisper-1]}
  Qwen/Qwen2.5-7B: {cmd: "q ${PORT}"}
`)
	tests := []struct{ name, want string }{
		{"llama-8b", "llama-8b"},
		{"gpt-4o-mini", "llama-8b"},
		{"gpt-3.5-turbo", "llama-8b"},
		{"whisper-1", "whisper"},
		{"whisper", "whisper"},
		{"Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B"},
		{"nope", ""},
		{"", ""},
		{"LLAMA-8B", ""}, // names are case-sensitive
	}
	for _, tt := range tests {
		m, ok := c.Resolve(tt.name)
		switch {
		case tt.want == "" && ok:
			t.Errorf("Resolve(%q) = %q, want not found", tt.name, m.ID)
		case tt.want != "" && (!ok || m.ID != tt.want):
			t.Errorf("Resolve(%q) = %v, %v; want %q", tt.name, m, ok, tt.want)
		}
	}

	// A Config built by hand has no alias index and still resolves.
	hand := Default()
	hand.Models["a"] = &Model{ID: "a", Aliases: []string{"b"}}
	if m, ok := hand.Resolve("b"); !ok || m.ID != "a" {
		t.Errorf("hand-built Resolve(b) = %v, %v", m, ok)
	}
	if _, ok := hand.Resolve("c"); ok {
		t.Errorf("hand-built Resolve(c) found something")
	}
}

func TestMergeKeys(t *testing.T) {
	c := mustParse(t, `
models:
  a: &base
    cmd: srv --port ${PORT}
    env: [A=1]
    parallel: 2
  b:
    <<: *base
    parallel: 3
`)
	b := c.Models["b"]
	if b.Parallel != 3 || !reflect.DeepEqual(b.Env, []string{"A=1"}) || len(b.Cmd) != 3 {
		t.Errorf("b = %+v", b)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // a problem must contain this
	}{
		{"empty file", "", "no models"},
		{"only comments", "# nothing here\n   # at all\n", "no models"},
		{"null document", "---\n", "no models"},
		{"no models key", "listen: 127.0.0.1:1\n", "models: no models configured"},
		{"empty models", "models: {}\n", "models: no models configured"},
		{"null models", "models:\n", "models: no models configured"},
		{"models not a mapping", "models: [a]\n", "models: must be a mapping, got a list"},
		{"root is a list", "- a\n", "the file must be a mapping"},
		{"two documents", minimal + "---\nlisten: x\n", "second YAML document"},

		{"unknown top key", minimal + "listne: 1.2.3.4:5\n", `unknown key "listne" (did you mean "listen"?)`},
		{"unknown model key", "models:\n  llama-8b:\n    comand: x\n    cmd: x ${PORT}\n", `models.llama-8b: unknown key "comand"`},
		{"unknown memory key", minimal + "memory: {reserve: 1GiB}\n", `memory: unknown key "reserve"`},
		{"unknown scheduling key", minimal + "scheduling: {polcy: fifo}\n", `scheduling: unknown key "polcy" (did you mean "policy"?)`},
		{"unknown model memory key", "models:\n  m:\n    cmd: x ${PORT}\n    memory: {gpu: 1GiB}\n", `models.m.memory: unknown key "gpu"`},
		{"duplicate key", minimal + "listen: a:1\nlisten: b:2\n", "listen: set twice (lines"},
		{"duplicate model", minimal + "  m:\n    cmd: y ${PORT}\n", "models.m: set twice"},

		{"listen", minimal + "listen: localhost\n", `listen: invalid address "localhost"`},
		{"listen port", minimal + "listen: localhost:99999\n", `listen: invalid address`},
		{"endpoint picker listen", minimal + "endpoint_picker: {listen: nowhere}\n", `endpoint_picker.listen: invalid address "nowhere"`},
		{"endpoint picker listen is listen", minimal + "listen: 10.0.0.5:8080\nendpoint_picker: {listen: 0.0.0.0:8080}\n",
			"endpoint_picker.listen: 0.0.0.0:8080 is the main listener's address"},
		{"endpoint picker open", minimal + "endpoint_picker: {open: sometimes}\n", "endpoint_picker.open"},
		{"endpoint picker leave", minimal + "endpoint_picker: {leave: 3}\n", `endpoint_picker.leave: invalid duration "3"`},
		{"endpoint picker unknown key", minimal + "endpoint_picker: {metrics: true}\n", `endpoint_picker: unknown key "metrics"`},
		{"log level", minimal + "log_level: verbose\n", `log_level: invalid value "verbose" (use debug, info, warn, error)`},
		{"api key empty", minimal + "api_keys: [a, '']\n", "api_keys[1]: must not be empty"},
		{"api keys not list", minimal + "api_keys: abc\n", "api_keys: must be a list"},
		{"admin key empty", minimal + "admin_keys: ['']\n", "admin_keys[0]: must not be empty"},
		{"bad origin", minimal + "cors_origins: [localhost:3000]\n", `cors_origins[0]: invalid origin "localhost:3000"`},
		{"max body", minimal + "max_body: 64XB\n", `max_body: invalid size "64XB" (use B, KiB, MiB, GiB`},
		{"max body zero", minimal + "max_body: 0\n", "max_body: must be more than 0"},
		{"ports garbage", minimal + "ports: lots\n", `ports: invalid range "lots"`},
		{"ports single", minimal + "ports: 10000\n", `ports: invalid range "10000"`},
		{"ports zero", minimal + "ports: 0-10\n", `ports: invalid range "0-10"`},
		{"ports too high", minimal + "ports: 65000-70000\n", `ports: invalid range "65000-70000"`},
		{"ports reversed", minimal + "ports: 2000-1000\n", `ports: invalid range "2000-1000": 2000 is after 1000`},
		{"health timeout", minimal + "health_timeout: 120\n", `health_timeout: invalid duration "120"`},
		{"health timeout zero", minimal + "health_timeout: 0s\n", "health_timeout: must be more than 0"},
		{"stop timeout negative", minimal + "stop_timeout: -1s\n", "stop_timeout: must not be negative"},
		{"reserve ram", minimal + "memory: {reserve_ram: -1GiB}\n", "memory.reserve_ram: invalid size"},
		{"cooldown", minimal + "memory: {cooldown_max: soon}\n", `memory.cooldown_max: invalid duration "soon"`},
		{"state file list", minimal + "memory: {state_file: [a]}\n", "memory.state_file: must be a string, got a list"},
		{"policy", minimal + "scheduling: {policy: lifo}\n", `scheduling.policy: invalid value "lifo" (use batch, fifo)`},
		{"eviction", minimal + "scheduling: {eviction: lfu}\n", `scheduling.eviction: invalid value "lfu" (use lru, cost)`},
		{"queue size", minimal + "scheduling: {queue_size: 0}\n", "scheduling.queue_size: must be at least 1, got 0"},
		{"queue size string", minimal + "scheduling: {queue_size: many}\n", `scheduling.queue_size: must be an integer, got "many"`},
		{"queue timeout", minimal + "scheduling: {queue_timeout: 0}\n", "scheduling.queue_timeout: must be more than 0"},
		{"max wait", minimal + "scheduling: {max_wait: -5s}\n", "scheduling.max_wait: must not be negative"},
		{"memory not mapping", minimal + "memory: 1GiB\n", `memory: must be a mapping, got "1GiB"`},

		{"missing cmd", "models:\n  m:\n    kind: llm\n", "models.m: missing cmd"},
		{"null model", "models:\n  m:\n", "models.m: missing cmd"},
		{"empty cmd", "models:\n  m:\n    cmd: '  '\n", "models.m.cmd: must not be empty"},
		{"empty cmd list", "models:\n  m:\n    cmd: []\n", "models.m.cmd: must not be empty"},
		{"empty program", "models:\n  m:\n    cmd: ['', '${PORT}']\n", "models.m.cmd: the program name is empty"},
		{"cmd list of lists", "models:\n  m:\n    cmd: [a, [b]]\n", "models.m.cmd[1]: must be a string, got a list"},
		{"unterminated quote", "models:\n  m:\n    cmd: server --name 'x ${PORT}\n", "models.m.cmd: unterminated single quote"},
		{"unknown placeholder cmd", "models:\n  m:\n    cmd: server ${PORT} --home ${HOME}\n", "models.m.cmd: unknown macro ${HOME}"},
		{"unknown placeholder env", "models:\n  m:\n    cmd: server ${PORT}\n    env: [A=1, 'B=${USER}']\n", "models.m.env[1]: unknown macro ${USER}"},
		{"unknown placeholder proxy", "models:\n  m:\n    cmd: server ${PORT}\n    proxy: http://${HOST}:${PORT}\n", "models.m.proxy: unknown macro ${HOST}"},
		{"unterminated placeholder", "models:\n  m:\n    cmd: server ${PORT\n", "models.m.cmd: unterminated placeholder"},
		{"port never told", "models:\n  m:\n    cmd: server --port 9000\n", "models.m: the backend is never told its port: add ${PORT} to cmd or set proxy"},
		{"port never told explicit proxy", "models:\n  m:\n    cmd: server\n    proxy: http://localhost:${PORT}\n", "models.m: the backend is never told its port"},
		{"proxy not a url", "models:\n  m:\n    cmd: server ${PORT}\n    proxy: localhost:${PORT}\n", `models.m.proxy: invalid URL "localhost:${PORT}"`},
		{"proxy empty", "models:\n  m:\n    cmd: server\n    proxy: ''\n", `models.m.proxy: invalid URL ""`},
		{"proxy ftp", "models:\n  m:\n    cmd: server\n    proxy: ftp://h:1\n", `models.m.proxy: invalid URL`},
		{"health", "models:\n  m:\n    cmd: s ${PORT}\n    health: health\n", `models.m.health: must be a path starting with "/", got "health"`},
		{"env form", "models:\n  m:\n    cmd: s ${PORT}\n    env: [A=1, NOEQUALS]\n", `models.m.env[1]: invalid entry "NOEQUALS" (want KEY=VALUE)`},
		{"env empty key", "models:\n  m:\n    cmd: s ${PORT}\n    env: [=1]\n", `models.m.env[0]: invalid entry "=1"`},
		{"env bad key", "models:\n  m:\n    cmd: s ${PORT}\n    env: [1A=1]\n", `models.m.env[0]: invalid entry "1A=1"`},
		{"env twice", "models:\n  m:\n    cmd: s ${PORT}\n    env: [A=1, A=2]\n", "models.m.env[1]: A is set twice"},
		{"kind", "models:\n  m:\n    cmd: s ${PORT}\n    kind: video\n", `models.m.kind: invalid value "video" (use llm, embedding, stt, tts, image)`},
		{"model vram", "models:\n  llama-8b:\n    cmd: s ${PORT}\n    memory: {vram: 6XB}\n", `models.llama-8b.memory.vram: invalid size "6XB" (use B, KiB, MiB, GiB`},
		{"gpu negative", "models:\n  m:\n    cmd: s ${PORT}\n    gpu: -1\n", "models.m.gpu: must be at least 0, got -1"},
		{"gpu string", "models:\n  m:\n    cmd: s ${PORT}\n    gpu: cuda0\n", `models.m.gpu: must be an integer, got "cuda0"`},
		{"parallel zero", "models:\n  m:\n    cmd: s ${PORT}\n    parallel: 0\n", "models.m.parallel: must be at least 1, got 0"},
		{"parallel float", "models:\n  m:\n    cmd: s ${PORT}\n    parallel: 1.5\n", `models.m.parallel: must be an integer, got "1.5"`},
		{"ttl negative", "models:\n  m:\n    cmd: s ${PORT}\n    ttl: -1m\n", "models.m.ttl: must not be negative"},
		{"ttl no unit", "models:\n  m:\n    cmd: s ${PORT}\n    ttl: 600\n", `models.m.ttl: invalid duration "600"`},
		{"pinned", "models:\n  m:\n    cmd: s ${PORT}\n    pinned: yes\n", `models.m.pinned: must be true or false, got "yes"`},
		{"preload", "models:\n  m:\n    cmd: s ${PORT}\n    preload: 1\n", `models.m.preload: must be true or false, got "1"`},
		{"model health timeout", "models:\n  m:\n    cmd: s ${PORT}\n    health_timeout: 0s\n", "models.m.health_timeout: must be more than 0"},
		{"model stop timeout", "models:\n  m:\n    cmd: s ${PORT}\n    stop_timeout: x\n", `models.m.stop_timeout: invalid duration "x"`},
		{"per-IP cap over the cap", minimal + "server: {max_conns: 10, max_conns_per_ip: 11}\n", "server.max_conns_per_ip: 11 is more than max_conns (10)"},
		{"server typo", minimal + "server: {max_con: 10}\n", `server: unknown key "max_con" (did you mean "max_conns"?)`},
		{"header timeout zero", minimal + "server: {header_timeout: 0s}\n", "server.header_timeout: must be more than 0"},
		{"negative cap", minimal + "server: {max_conns: -1}\n", "server.max_conns: must be at least 0"},
		{"model upstream keepalive", "models:\n  m:\n    cmd: s ${PORT}\n    upstream_keepalive: -2s\n", `models.m.upstream_keepalive: must not be negative`},

		{"model id whitespace", "models:\n  'llama 8b':\n    cmd: s ${PORT}\n", `models: invalid model id "llama 8b"`},
		{"model id empty", "models:\n  '':\n    cmd: s ${PORT}\n", `models: invalid model id ""`},
		{"alias whitespace", "models:\n  m:\n    cmd: s ${PORT}\n    aliases: [ok, 'not ok']\n", `models.m.aliases[1]: invalid alias "not ok"`},
		{"alias empty", "models:\n  m:\n    cmd: s ${PORT}\n    aliases: ['']\n", `models.m.aliases[0]: invalid alias ""`},
		{"alias is own id", "models:\n  m:\n    cmd: s ${PORT}\n    aliases: [m]\n", `models.m.aliases: alias "m" is the model's own id`},
		{"alias is other id", "models:\n  foo:\n    cmd: s ${PORT}\n    aliases: [bar]\n  bar:\n    cmd: s ${PORT}\n", `models.foo.aliases: alias "bar" is already the id of model "bar"`},
		{"alias used twice", "models:\n  bar:\n    cmd: s ${PORT}\n    aliases: [gpt-4o]\n  foo:\n    cmd: s ${PORT}\n    aliases: [gpt-4o]\n", `models.foo.aliases: alias "gpt-4o" is already used by model "bar"`},
		{"alias listed twice", "models:\n  m:\n    cmd: s ${PORT}\n    aliases: [a, a]\n", `models.m.aliases: alias "a" is listed twice`},

		{"mode unknown model", minimal + "modes:\n  art: [m, sdxl]\n", `modes.art[1]: unknown model "sdxl"`},
		{"mode not a list", minimal + "modes:\n  art: m\n", "modes.art: must be a list"},
		{"mode null", minimal + "modes:\n  art:\n", "modes.art: must be a list, got nothing"},
		{"mode name", minimal + "modes:\n  'a b': [m]\n", `modes: invalid mode name "a b"`},
		{"modes not mapping", minimal + "modes: [m]\n", "modes: must be a mapping, got a list"},
		{"bad merge", minimal + "memory:\n  <<: 5\n", "memory: << must merge a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.yaml)
			for _, p := range got {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("problems %q\ndo not contain %q", got, tt.want)
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	got := problems(t, `
listen: nowhere
log_level: loud
bogus: 1
other: 2
scheduling:
  policy: random
models:
  a:
    cmd: s ${PORT}
    comand: x
    parallel: 0
    memory: {vram: 6XB}
  b:
    cmd: s --port 1
    aliases: [x]
  c:
    cmd: s ${PORT}
    aliases: [x]
modes:
  art: [nope]
`)
	want := []string{
		`listen: invalid address "nowhere"`,
		`log_level: invalid value "loud"`,
		`unknown key "bogus"`,
		`unknown key "other"`,
		`scheduling.policy: invalid value "random"`,
		`models.a: unknown key "comand"`,
		`models.a.parallel: must be at least 1`,
		`models.a.memory.vram: invalid size "6XB"`,
		`models.b: the backend is never told its port`,
		`models.c.aliases: alias "x" is already used by model "b"`,
		`modes.art[0]: unknown model "nope"`,
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	// Problems come in file order.
	for i := 0; i < len(want) && i < len(got); i++ {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}

func TestNullMeansDefault(t *testing.T) {
	c := mustParse(t, minimal+"listen:\nmemory:\n  state_file: ~\nscheduling:\n")
	if c.Listen != DefaultListen || c.Memory.StateFile != "" || c.Scheduling.Policy != PolicyBatch {
		t.Errorf("null values did not leave the defaults: %+v", c)
	}
}

func TestYAMLSyntaxError(t *testing.T) {
	_, err := Parse([]byte("models: [a\n"))
	if err == nil {
		t.Fatal("Parse accepted broken YAML")
	}
	var verr *ValidationError
	if errors.As(err, &verr) {
		t.Errorf("a syntax error should not be a *ValidationError: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "nope.yaml")
		_, err := Load(path)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name the file", err)
		}
	})

	t.Run("valid", func(t *testing.T) {
		path := filepath.Join(dir, "ok.yaml")
		if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Models["m"]; !ok {
			t.Errorf("model m missing: %+v", c.Models)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		path := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(path, []byte(minimal+"listne: x\nlog_level: loud\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		var verr *ValidationError
		if !errors.As(err, &verr) || len(verr.Problems) != 2 {
			t.Fatalf("Load = %v, want a *ValidationError with 2 problems", err)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "2 problems") {
			t.Errorf("error %q does not name the file and count", err)
		}
	})

	t.Run("syntax", func(t *testing.T) {
		path := filepath.Join(dir, "syntax.yaml")
		if err := os.WriteFile(path, []byte("models: [a\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Load = %v, want an error naming the file", err)
		}
	})
}
