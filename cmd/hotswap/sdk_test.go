package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Clients as their users run them: the official SDKs from npm (pinned by
// testdata/sdk/package-lock.json, installed by the test) and curl.

// sdkDir installs testdata/sdk's packages from its lockfile, once (again
// when the lockfile changes), and returns the directory; the test is
// skipped, saying why, without node, npm or the npm registry.
func sdkDir(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the official SDKs' tests need Node.js and npm", tool)
		}
	}
	dir, err := filepath.Abs("testdata/sdk")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm ci in %s failed (no npm registry?): %v\n%s", dir, err, out)
	}
	return dir
}

// node runs one of dir's scripts and decodes the JSON line it prints for
// each check.
func node[T any](t *testing.T, dir, script string, args ...string) []T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	var results []T
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var r T
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("node %s: %v: %s", script, err, sc.Text())
		}
		results = append(results, r)
	}
	return results
}

// TestAnthropicSDKKeys: the Anthropic SDK sends its key as x-api-key (its
// 0.x releases, and 1.x by default) or, given authToken, as Bearer; with
// api_keys set, both are let in, and a key hotswap does not know is the
// SDK's AuthenticationError.
func TestAnthropicSDKKeys(t *testing.T) {
	dir := sdkDir(t)
	b := build(t)
	_, base, logs := startLogged(t, b, writeConfig(t, b, `
api_keys: [sk-sdk-test-key]
ports: 22000-22999
models:
  claude-mock: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
`))
	type result struct {
		SDK, Check, Type, Text, Name string
		OK                           bool
		Status                       int
		Error                        string
	}
	seen := map[string]result{}
	for _, r := range node[result](t, dir, "sdk.mjs", base, "sk-sdk-test-key", "claude-mock") {
		seen[r.SDK+" "+r.Check] = r
	}
	for _, sdk := range []string{"0.39.0", "1.17.0"} {
		if r := seen[sdk+" create"]; !r.OK || r.Type != "message" || !strings.Contains(r.Text, "echo: hi") {
			t.Errorf("SDK %s, messages.create with x-api-key: %+v", sdk, r)
		}
		if r := seen[sdk+" stream"]; !r.OK || !strings.HasPrefix(r.Text, "tok0") {
			t.Errorf("SDK %s, messages.stream: %+v", sdk, r)
		}
		if r := seen[sdk+" auth-token"]; !r.OK {
			t.Errorf("SDK %s, authToken (Bearer): %+v", sdk, r)
		}
		if r := seen[sdk+" wrong-key"]; r.OK || r.Status != 401 || r.Name != "AuthenticationError" {
			t.Errorf("SDK %s, a wrong key: %+v", sdk, r)
		}
	}
	if strings.Contains(logs.String(), "sk-sdk-test-key") {
		t.Error("the key is in hotswap's log")
	}
}

// TestCurlKeyStyles: the ways curl users pass a key.
func TestCurlKeyStyles(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not found")
	}
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, `
api_keys: [sk-curl-key]
ports: 22000-22999
models:
  m: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
`))
	for _, args := range [][]string{
		{"-H", "Authorization: Bearer sk-curl-key"},
		{"-H", "authorization: bearer sk-curl-key"},
		{"--oauth2-bearer", "sk-curl-key"},
		{"-H", "x-api-key: sk-curl-key"},
		{"-u", ":sk-curl-key"},
		{"-u", "sk-curl-key:"},
		{"-H", "api-key: sk-curl-key"},
	} {
		cmd := exec.Command("curl", append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/v1/models"}, args...)...)
		out, err := cmd.Output()
		if err != nil || string(out) != "200" {
			t.Errorf("curl %q: %s %v", args, out, err)
		}
	}
	out, _ := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "x-api-key: nope", base+"/v1/models").Output()
	if string(out) != "401" {
		t.Errorf("curl with a wrong key: %s", out)
	}
}

// TestSDKsSeeTheirModelName: the OpenAI and Anthropic SDKs, asking for a
// model with upstream_model by its name, an alias and a variant, get
// answers (whole, streamed, embeddings) that name what they asked for,
// from a backend that answers only to its served name.
func TestSDKsSeeTheirModelName(t *testing.T) {
	dir := sdkDir(t)
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, `
ports: 22000-22999
models:
  qwen:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name qwen3-8b -tokens 3 -stream-interval 1ms -progress-interval 0
    upstream_model: qwen3-8b
    aliases: [gpt-4o-mini]
    variants:
      qwen-fast: {params: {set: {temperature: 0}}}
`))
	names := []string{"qwen", "gpt-4o-mini", "qwen-fast"}
	type result struct {
		Name, Check, Text, Error string
		OK                       bool
		Models                   []string
	}
	seen := map[string]result{}
	for _, r := range node[result](t, dir, "shape.mjs", append([]string{base}, names...)...) {
		seen[r.Name+" "+r.Check] = r
	}
	for _, name := range names {
		for _, check := range []string{"openai-create", "openai-stream", "openai-embeddings", "anthropic-stream"} {
			r, ok := seen[name+" "+check]
			if !ok || !r.OK || len(r.Models) == 0 || r.Text == "" {
				t.Errorf("%s, %s: %+v", name, check, r)
				continue
			}
			for _, m := range r.Models {
				if m != name {
					t.Errorf("%s, %s: an answer for %q", name, check, m)
					break
				}
			}
		}
	}
}
