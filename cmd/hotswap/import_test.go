package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// runHotswap runs the hotswap binary with args and returns its exit
// status, stdout and stderr.
func runHotswap(t *testing.T, b bins, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(b.hotswap, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestImportLlamaSwapServes: a llama-swap file whose models run the mock
// is imported; hotswap check accepts what the import wrote; hotswap serves
// it, and its models (by id, alias and setParamsByID name) start and
// answer, with the keys, preload and variants the llama-swap file meant.
func TestImportLlamaSwapServes(t *testing.T) {
	b := build(t)
	t.Setenv("MOCKBACKEND", b.mock)
	t.Setenv("IMPORT_TEST_KEY", "sk-imported")

	code, out, stderr := runHotswap(t, b, "import", "llama-swap", filepath.Join("testdata", "llamaswap", "mock.yaml"))
	if code != 0 {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "3 models") || !strings.Contains(stderr, "not imported:") {
		t.Errorf("import's summary: %s", stderr)
	}
	for _, kept := range []string{"# cmdStop: kill ${PID}", "# groups:", "load_progress: reasoning  # sendLoadingState: true", "# timeouts:", "# port: ${PORT}"} {
		if !strings.Contains(out, kept) {
			t.Errorf("the import does not keep %q:\n%s", kept, out)
		}
	}
	path := filepath.Join(t.TempDir(), "hotswap.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runHotswap(t, b, "check", "-config", path); code != 0 || !strings.Contains(stderr, "ok, 3 models") {
		t.Fatalf("check: exit %d: %s\n%s", code, stderr, out)
	}

	cmd, url := start(t, b, path)
	c := client{t, url, "sk-imported"}

	// apiKeys: a request without the key is refused.
	if code, body, _ := (client{t, url, ""}).do("POST", "/v1/chat/completions", `{"model":"chat","messages":[]}`); code != 401 {
		t.Errorf("without a key: %d %s", code, body)
	}
	// hooks.on_startup.preload: embed starts with hotswap.
	if !mocktest.Eventually(20*time.Second, func() bool { return c.loaded()["embed"] != 0 }) {
		t.Fatalf("embed was not preloaded: %v", c.running())
	}
	if _, ok := c.loaded()["chat"]; ok {
		t.Errorf("chat started without a request")
	}

	// The model, its alias and its setParamsByID name share one backend:
	// alternating between them never swaps.
	pid := c.chat("chat")
	for _, name := range []string{"chat-creative", "gpt-4o-mini", "chat-creative", "chat"} {
		if got := c.chat(name); got != pid {
			t.Errorf("%s answered from pid %d, chat from %d: a swap", name, got, pid)
		}
	}
	if got := c.chat("spare"); got == pid || got == 0 {
		t.Errorf("spare answered from pid %d", got)
	}
	if got := c.chat("embed"); got != c.loaded()["embed"] {
		t.Errorf("embed answered from pid %d, preloaded %d", got, c.loaded()["embed"])
	}

	// filters and useModelName: the backend, which answers only to its
	// served name as vLLM does, is sent that name and the shaped params,
	// while the client sees the name it asked for, streamed and not.
	for name, temperature := range map[string]float64{"chat": 0.2, "gpt-4o-mini": 0.2, "chat-creative": 1.3} {
		var answer map[string]any
		c.json("POST", "/v1/chat/completions", `{"model":"`+name+`","temperature":0.9,"logit_bias":{"1":1},"messages":[{"role":"user","content":"hi"}]}`, 200, &answer)
		got := receivedJSON(c, "chat")
		if got["model"] != "upstream-chat" || got["temperature"] != temperature || got["logit_bias"] != nil || answer["model"] != name {
			t.Errorf("%s: the backend received %v; the client was answered for %v", name, got, answer["model"])
		}
		models, _, done := streamModels(c, "/v1/chat/completions", `{"model":"`+name+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		if !done || len(models) == 0 || slices.ContainsFunc(models, func(m string) bool { return m != name }) {
			t.Errorf("%s: a stream of events for %v (done %v)", name, models, done)
		}
	}

	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	c.json("GET", "/v1/models", "", 200, &list)
	ids := map[string]bool{}
	for _, m := range list.Data {
		ids[m.ID] = true
	}
	if !ids["chat"] || !ids["spare"] {
		t.Errorf("/v1/models lists %v", ids)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestImportBadInput: what cannot be imported gets exit status 1, the
// file's line and key on stderr, and nothing on stdout.
func TestImportBadInput(t *testing.T) {
	b := build(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, text string
		want       []string
	}{
		{"notyaml.yaml", "models:\n  a: [\n", []string{"notyaml.yaml", "not a YAML file", "line"}},
		{"typo.yaml", "models:\n  a:\n    cmd: srv --port ${PORT}\n    checkEndpiont: /health\n",
			[]string{"typo.yaml", "line 4", "models.a.checkEndpiont", "did you mean checkEndpoint"}},
		{"types.yaml", "startPort: many\nmodels:\n  a:\n    cmd: srv --port ${PORT}\n    ttl: [1]\n",
			[]string{"2 problems", "line 1: startPort", "line 5: models.a.ttl"}},
	}
	for _, c := range cases {
		code, stdout, stderr := runHotswap(t, b, "import", "llama-swap", write(c.name, c.text))
		if code != 1 || stdout != "" {
			t.Errorf("%s: exit %d, stdout %q", c.name, code, stdout)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr does not say %q:\n%s", c.name, w, stderr)
			}
		}
	}
	if code, stdout, stderr := runHotswap(t, b, "import", "llama-swap", filepath.Join(dir, "missing.yaml")); code != 1 || stdout != "" ||
		!strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing file: exit %d %q %s", code, stdout, stderr)
	}
	for _, args := range [][]string{{"import"}, {"import", "llama-swap"}, {"import", "ollama", "x.yaml"}} {
		if code, _, stderr := runHotswap(t, b, args...); code != 2 || !strings.Contains(stderr, "llama-swap") {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
}

// TestImportFromStdin: "-" reads the file from stdin.
func TestImportFromStdin(t *testing.T) {
	b := build(t)
	cmd := exec.Command(b.hotswap, "import", "llama-swap", "-")
	cmd.Stdin = strings.NewReader("models:\n  a:\n    cmd: srv --port ${PORT}\n    ttl: 90\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ttl: 90s") || !strings.Contains(stdout.String(), "from a llama-swap configuration") {
		t.Errorf("output:\n%s", stdout.String())
	}
}
