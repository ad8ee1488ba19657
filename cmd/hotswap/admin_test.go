package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// The control plane, tested through the hotswap binary with mock backends:
// what an operator (or a script, or the status page) does with it.

const adminConfig = `
ports: 22000-22999
stop_timeout: 2s
api_keys: [user-key]
admin_keys: [admin-key]
cors_origins: ["http://ui.example"]
models:
  a:
    cmd: MOCK -port ${PORT} -model ${MODEL} -tokens 40 -stream-interval 50ms
    aliases: [alpha]
    memory: {ram: 10MiB}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL} -cors", memory: {ram: 10MiB}}
  c: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 10MiB}, ttl: 1h}
  huge: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 64TiB}}
modes:
  work: [b, c]
  big: [c, huge]
`

// client talks to hotswap with one key.
type client struct {
	t   *testing.T
	url string
	key string
}

func (c client) do(method, path, body string, header ...string) (int, []byte, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// metric reads one series of GET /metrics, named with its labels as
// Prometheus writes them: hotswap_evictions_total{model="a",reason="ttl"}.
func (c client) metric(series string) (float64, bool) {
	c.t.Helper()
	_, body, _ := c.do("GET", "/metrics", "")
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// json does a request that must answer want, and decodes its body into v.
func (c client) json(method, path, body string, want int, v any) {
	c.t.Helper()
	code, b, _ := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// chat sends a chat for model, which must be answered 200 by a mock
// backend, and returns that backend's pid.
func (c client) chat(model string) int {
	c.t.Helper()
	code, body, h := c.do("POST", "/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 {
		c.t.Fatalf("chat %s: %d %s", model, code, body)
	}
	pid, err := strconv.Atoi(h.Get("X-Mock-Pid"))
	if err != nil {
		c.t.Fatalf("chat %s: no backend pid: %v", model, err)
	}
	return pid
}

// errCode is the OpenAI error code of a body.
func errCode(b []byte) string {
	var e struct {
		Error struct{ Code string }
	}
	json.Unmarshal(b, &e)
	return e.Error.Code
}

// running is GET /admin/running, by model.
func (c client) running() map[string]control.ModelStatus {
	c.t.Helper()
	var list []control.ModelStatus
	c.json("GET", "/admin/running", "", 200, &list)
	out := map[string]control.ModelStatus{}
	for _, r := range list {
		out[r.Model] = r
	}
	return out
}

// models is GET /admin/models, by model.
func (c client) models() map[string]control.ModelStatus {
	c.t.Helper()
	var list []control.ModelStatus
	c.json("GET", "/admin/models", "", 200, &list)
	out := map[string]control.ModelStatus{}
	for _, r := range list {
		out[r.Model] = r
	}
	return out
}

// loaded is the models running now (ready or starting), sorted, with pids.
func (c client) loaded() map[string]int {
	c.t.Helper()
	out := map[string]int{}
	for id, r := range c.running() {
		if r.State == "ready" || r.State == "starting" {
			out[id] = r.Pid
		}
	}
	return out
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestAdminAccess(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, adminConfig))
	anon, user, admin := client{t, url, ""}, client{t, url, "user-key"}, client{t, url, "admin-key"}
	for _, path := range []string{"/admin/running", "/admin/memory", "/admin/modes", "/metrics"} {
		for _, c := range []client{anon, user} {
			if code, body, _ := c.do("GET", path, ""); code != 401 || errCode(body) != "invalid_api_key" {
				t.Errorf("GET %s with key %q: %d %s", path, c.key, code, body)
			}
		}
		if code, body, _ := admin.do("GET", path, ""); code != 200 {
			t.Errorf("GET %s with the admin key: %d %s", path, code, body)
		}
	}
	for _, path := range []string{"/admin/models/b/load", "/admin/unload", "/admin/reload", "/admin/modes/work"} {
		if code, _, _ := user.do("POST", path, ""); code != 401 {
			t.Errorf("POST %s with an API key: %d", path, code)
		}
	}
	// The API keys protect /v1 and /upstream; the admin key is not one.
	if code, _, _ := admin.do("GET", "/v1/models", ""); code != 401 {
		t.Errorf("GET /v1/models with the admin key: %d", code)
	}
	if code, _, _ := anon.do("GET", "/upstream/b/mock/stats", ""); code != 401 {
		t.Errorf("GET /upstream without a key: %d", code)
	}
	if code, _, _ := user.do("GET", "/v1/models", ""); code != 200 {
		t.Errorf("GET /v1/models with an API key: %d", code)
	}
	// Wrong methods and paths are told so, in OpenAI's format.
	if code, body, _ := admin.do("POST", "/admin/running", ""); code != 405 || errCode(body) != "method_not_allowed" {
		t.Errorf("POST /admin/running: %d %s", code, body)
	}
	if code, body, _ := admin.do("GET", "/admin/models/b/load", ""); code != 405 {
		t.Errorf("GET load: %d %s", code, body)
	}
	if code, body, _ := admin.do("GET", "/admin/nothing", ""); code != 404 || errCode(body) != "not_found" {
		t.Errorf("GET /admin/nothing: %d %s", code, body)
	}
}

func TestAdminLoadUnload(t *testing.T) {
	b := build(t)
	cmd, url, logs := startLogged(t, b, writeConfig(t, b, adminConfig))
	admin, user := client{t, url, "admin-key"}, client{t, url, "user-key"}

	// Load by alias: answered once ready, with the same rules as a request.
	var st map[string]string
	admin.json("POST", "/admin/models/alpha/load", "", 200, &st)
	if st["state"] != "ready" {
		t.Errorf("load answered %v", st)
	}
	r, ok := admin.running()["a"]
	if !ok || r.State != "ready" || r.Pid == 0 || r.Port < 22000 || r.Device != "ram" || r.NeedRAM != 10<<20 ||
		r.RAM == 0 && !mocktest.Eventually(5*time.Second, func() bool { return admin.running()["a"].RAM > 0 }) {
		t.Errorf("running a: %+v", r)
	}
	if !mocktest.Alive(r.Pid) {
		t.Fatalf("pid %d of a is not alive", r.Pid)
	}
	// A ttl shows what is left of it.
	admin.json("POST", "/admin/models/c/load", "", 200, nil)
	if c := admin.running()["c"]; c.TTLLeftSeconds == nil || *c.TTLLeftSeconds <= 3000 || *c.TTLLeftSeconds > 3600 {
		t.Errorf("c's ttl left: %+v", c.TTLLeftSeconds)
	}
	if code, body, _ := admin.do("POST", "/admin/models/nope/load", ""); code != 404 || errCode(body) != "model_not_found" {
		t.Errorf("load of an unknown model: %d %s", code, body)
	}
	// Memory rules: a model that can never fit is refused as a request is.
	if code, body, _ := admin.do("POST", "/admin/models/huge/load", ""); code != 503 || errCode(body) != "insufficient_memory" {
		t.Errorf("load of huge: %d %s", code, body)
	}

	// Unload with a stream in flight: it finishes, then a stops.
	stream := startStream(t, url, "a")
	unloaded := make(chan int, 1)
	go func() {
		code, _, _ := admin.do("POST", "/admin/models/a/unload", "")
		unloaded <- code
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return admin.running()["a"].State == "draining" }) {
		t.Errorf("a is %q while unloading with a request in flight", admin.running()["a"].State)
	}
	body, done := stream.rest()
	if !done || strings.Count(body, `"content"`) < 40 {
		t.Errorf("the stream in flight was not finished: done %v, %d chunks", done, strings.Count(body, `"content"`))
	}
	if code := <-unloaded; code != 200 {
		t.Errorf("unload: %d", code)
	}
	if _, ok := admin.running()["a"]; ok || !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(r.Pid) }) {
		t.Errorf("a still running after unload: %+v", admin.running()["a"])
	}

	// Forced: the stream in flight is cut with a clean error event.
	stream = startStream(t, url, "a")
	admin.json("POST", "/admin/models/a/unload?force=true", "", 200, nil)
	body, done = stream.rest()
	if done || !strings.Contains(body, "model_unloaded") {
		t.Errorf("a forced unload did not cut the stream with model_unloaded: %s", body)
	}

	// Not waited for: 202 at once, ready later.
	if code, _, _ := admin.do("POST", "/admin/models/b/load?wait=false", ""); code != 202 {
		t.Errorf("load ?wait=false: %d", code)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return admin.running()["b"].State == "ready" }) {
		t.Errorf("b after a load not waited for: %+v", admin.running()["b"])
	}
	// Unload all.
	var all struct{ Unloaded []string }
	admin.json("POST", "/admin/unload", "", 200, &all)
	if slices.Sort(all.Unloaded); !slices.Equal(all.Unloaded, []string{"b", "c"}) {
		t.Errorf("unload all: %v", all.Unloaded)
	}
	if left := admin.loaded(); len(left) != 0 {
		t.Errorf("loaded after unload all: %v", left)
	}
	// Requests still work: the next one starts its model again.
	if code, body, _ := user.do("POST", "/v1/chat/completions", `{"model":"b","messages":[]}`); code != 200 {
		t.Errorf("request after unload all: %d %s", code, body)
	}
	// Keys are never logged.
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if strings.Contains(logs.String(), "admin-key") || strings.Contains(logs.String(), "user-key") {
		t.Error("a key was logged")
	}
}

// streamer reads a streamed chat answer.
type streamer struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
	got  strings.Builder
}

// startStream starts a streamed chat with model and returns once its first
// chunk has arrived (the request is in flight at its backend).
func startStream(t *testing.T, url, model string) *streamer {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer user-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	s := &streamer{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
	for !strings.Contains(s.got.String(), `"content"`) {
		line, err := s.r.ReadString('\n')
		s.got.WriteString(line)
		if err != nil {
			t.Fatalf("stream ended before its first chunk: %v: %s", err, s.got.String())
		}
	}
	return s
}

// rest reads the stream to its end, and says whether it ended with [DONE].
func (s *streamer) rest() (string, bool) {
	b, _ := io.ReadAll(s.r)
	s.got.Write(b)
	body := s.got.String()
	return body, strings.Contains(body, "data: [DONE]")
}

func TestModesSwitchAndRestore(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, adminConfig)
	state := t.TempDir()
	cmd, url, _ := launch(t, b, cfg, state)
	admin := client{t, url, "admin-key"}

	admin.json("POST", "/admin/models/a/load", "", 200, nil)
	admin.json("POST", "/admin/models/b/load", "", 200, nil)
	before := admin.loaded()

	// work is b and c: a goes, b stays as it is (same process), c comes.
	var res control.ModeResult
	admin.json("POST", "/admin/modes/work", "", 200, &res)
	after := admin.loaded()
	if got := keys(after); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("after switching to work: %v (%+v)", got, res)
	}
	if after["b"] != before["b"] {
		t.Errorf("b was restarted by the switch: pid %d, was %d", after["b"], before["b"])
	}
	if !slices.Equal(res.Remembered, []string{"a", "b"}) || res.Mode != "work" {
		t.Errorf("switch result %+v", res)
	}
	results := map[string]string{}
	for _, m := range res.Models {
		results[m.Model] = m.Result
	}
	if results["a"] != "unloaded" || results["b"] != "kept" || results["c"] != "loaded" {
		t.Errorf("per model: %v", results)
	}
	var modes control.ModesInfo
	admin.json("GET", "/admin/modes", "", 200, &modes)
	if modes.Active != "work" || !slices.Equal(modes.Remembered, []string{"a", "b"}) || len(modes.Modes) != 2 {
		t.Errorf("GET /admin/modes: %+v", modes)
	}
	// A request for a model outside the mode still works.
	if pid := chatKey(t, url, "a"); pid == 0 {
		t.Error("a request for a model outside the mode failed")
	}
	if code, body, _ := admin.do("POST", "/admin/modes/nope", ""); code != 404 || errCode(body) != "mode_not_found" {
		t.Errorf("unknown mode: %d %s", code, body)
	}

	// The remembered set survives a restart, and is not restored by it.
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	_, url, _ = launch(t, b, cfg, state)
	admin = client{t, url, "admin-key"}
	admin.json("GET", "/admin/modes", "", 200, &modes)
	if modes.Active != "work" || !slices.Equal(modes.Remembered, []string{"a", "b"}) {
		t.Errorf("after a restart: %+v", modes)
	}
	if l := admin.loaded(); len(l) != 0 {
		t.Errorf("a restart loaded %v", l)
	}
	// Switch to big (c, huge): huge cannot fit and is refused, c loads.
	admin.json("POST", "/admin/models/b/load", "", 200, nil)
	admin.json("POST", "/admin/modes/big", "", 200, &res)
	results = map[string]string{}
	errs := map[string]string{}
	for _, m := range res.Models {
		results[m.Model], errs[m.Model] = m.Result, m.Error
	}
	if results["huge"] != "refused" || !strings.Contains(errs["huge"], "needs 64TiB") || results["c"] != "loaded" ||
		results["b"] != "unloaded" {
		t.Errorf("switch to big: %+v", res.Models)
	}
	if got := keys(admin.loaded()); !slices.Equal(got, []string{"c"}) {
		t.Errorf("after switching to big: %v", got)
	}
	// A switch from one mode to another keeps what the first switch
	// remembered, across the restart: b, loaded in work, is not the set
	// before any mode.
	if !slices.Equal(res.Remembered, []string{"a", "b"}) {
		t.Errorf("switch from work to big remembered %v, want [a b]", res.Remembered)
	}
	// Restore goes back to exactly what was loaded before the first switch.
	admin.json("POST", "/admin/modes/restore", "", 200, &res)
	if got := keys(admin.loaded()); !slices.Equal(got, keys(before)) {
		t.Errorf("after restore: %v, want %v", got, keys(before))
	}
	modes = control.ModesInfo{}
	admin.json("GET", "/admin/modes", "", 200, &modes)
	if modes.Active != "" || len(modes.Remembered) != 0 {
		t.Errorf("after restore: %+v", modes)
	}
	if code, body, _ := admin.do("POST", "/admin/modes/restore", ""); code != 409 || errCode(body) != "nothing_to_restore" {
		t.Errorf("a second restore: %d %s", code, body)
	}
}

// TestRestoreIsPidForPid: what was loaded before a switch is loaded after
// the restore, and a model the switch kept is the same process throughout.
func TestRestoreIsPidForPid(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, adminConfig))
	admin := client{t, url, "admin-key"}
	admin.json("POST", "/admin/models/a/load", "", 200, nil)
	admin.json("POST", "/admin/models/c/load", "", 200, nil)
	before := admin.loaded()
	admin.json("POST", "/admin/modes/work", "", 200, nil) // b, c: a goes, c stays
	admin.json("POST", "/admin/modes/restore", "", 200, nil)
	after := admin.loaded()
	if !slices.Equal(keys(after), keys(before)) {
		t.Fatalf("loaded %v after restore, %v before", keys(after), keys(before))
	}
	if after["c"] != before["c"] {
		t.Errorf("c, in both sets, was restarted: pid %d, was %d", after["c"], before["c"])
	}
	if after["a"] == before["a"] || mocktest.Alive(before["a"]) {
		t.Errorf("a should have been unloaded and started again: pid %d, was %d", after["a"], before["a"])
	}
}

// chatKey is chat with the API key of adminConfig.
func chatKey(t *testing.T, url, model string) int {
	t.Helper()
	return client{t, url, "user-key"}.chat(model)
}

func TestAdminMemory(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, adminConfig))
	admin := client{t, url, "admin-key"}
	pid := chatKey(t, url, "b")
	type device struct {
		Device                                string
		Total, Free, Reserve, Used, Available int64
		UsedBy                                map[string]int64 `json:"used_by"`
		Reserved                              int64
	}
	var devs []device
	ok := mocktest.Eventually(5*time.Second, func() bool {
		admin.json("GET", "/admin/memory", "", 200, &devs)
		return len(devs) > 0 && devs[0].UsedBy["b"] > 0
	})
	if !ok || devs[0].Device != "ram" || devs[0].Total <= 0 || devs[0].Free <= 0 || devs[0].Free > devs[0].Total ||
		devs[0].Available > devs[0].Free || devs[0].Used != devs[0].UsedBy["b"] {
		t.Fatalf("memory: %+v", devs)
	}
	if !mocktest.Alive(pid) {
		t.Fatal("b is not running")
	}
	admin.json("GET", "/admin/memory?device=ram", "", 200, &devs)
	if len(devs) != 1 || devs[0].Device != "ram" {
		t.Errorf("?device=ram: %+v", devs)
	}
	if code, body, _ := admin.do("GET", "/admin/memory?device=gpu7", ""); code != 404 || errCode(body) != "device_not_found" {
		t.Errorf("?device=gpu7: %d %s", code, body)
	}
}

func TestUpstreamPassthrough(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, adminConfig))
	user := client{t, url, "user-key"}
	// A cold model is started for it; the path after the model is the
	// backend's own.
	code, body, h := user.do("GET", "/upstream/b/mock/stats", "")
	if code != 200 || h.Get("X-Mock-Path") != "/mock/stats" || !strings.Contains(string(body), `"pid"`) {
		t.Fatalf("GET /upstream/b/mock/stats: %d %s %v", code, body, h)
	}
	// Any method; an alias names the model too; the query goes along.
	code, body, h = user.do("POST", "/upstream/alpha/v1/chat/completions?x=1", `{"messages":[]}`)
	if code != 200 || h.Get("X-Mock-Model") != "a" || h.Get("X-Mock-Path") != "/v1/chat/completions?x=1" {
		t.Errorf("POST through /upstream/alpha: %d %s", code, body)
	}
	// The backend's own answers pass through, errors included.
	if code, _, _ = user.do("GET", "/upstream/b/no/such/path", ""); code != 404 {
		t.Errorf("a path the backend does not serve: %d", code)
	}
	if code, body, _ = user.do("GET", "/upstream/nope/x", ""); code != 404 || errCode(body) != "model_not_found" {
		t.Errorf("unknown model: %d %s", code, body)
	}
	if code, body, _ = user.do("GET", "/upstream/", ""); code != 400 {
		t.Errorf("no model: %d %s", code, body)
	}
}

func TestCORS(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, adminConfig))
	anon, user := client{t, url, ""}, client{t, url, "user-key"}
	// A preflight needs no key: browsers send none.
	code, _, h := anon.do("OPTIONS", "/v1/chat/completions", "", "Origin", "http://ui.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	if code != 204 || h.Get("Access-Control-Allow-Origin") != "http://ui.example" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		h.Get("Access-Control-Allow-Headers") != "authorization, content-type" {
		t.Errorf("preflight from an allowed origin: %d %v", code, h)
	}
	code, body, h := anon.do("OPTIONS", "/v1/chat/completions", "", "Origin", "http://evil.example",
		"Access-Control-Request-Method", "POST")
	if code != 403 || errCode(body) != "origin_not_allowed" || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d %s %v", code, body, h)
	}
	// The request itself carries the header, for an allowed origin only
	// (whatever the backend says).
	code, _, h = user.do("POST", "/v1/chat/completions", `{"model":"b","messages":[]}`, "Origin", "http://ui.example")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "http://ui.example" {
		t.Errorf("request from an allowed origin: %d %v", code, h)
	}
	// Another origin is refused outright, even with the key (see
	// frontdoor_test.go), and even where the backend (b allows any origin,
	// as llama-server does) would let it in.
	for _, path := range []string{"/v1/models", "/upstream/b/mock/stats"} {
		code, body, h := user.do("GET", path, "", "Origin", "http://evil.example")
		if code != 403 || errCode(body) != "origin_not_allowed" || h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s from another origin: %d %s %v", path, code, body, h)
		}
	}
	code, body, h = user.do("POST", "/v1/chat/completions", `{"model":"b","messages":[]}`, "Origin", "http://evil.example")
	if code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a backend let another origin in: %d %s %v", code, body, h)
	}
	// /upstream answers are the backend's own, CORS headers included.
	code, _, h = user.do("GET", "/upstream/b/mock/stats", "", "Origin", "http://ui.example")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "http://ui.example" {
		t.Errorf("/upstream is the backend's own answer: %d %v", code, h)
	}
	// Errors carry it too, so that the page can read them.
	code, _, h = anon.do("GET", "/v1/models", "", "Origin", "http://ui.example")
	if code != 401 || h.Get("Access-Control-Allow-Origin") != "http://ui.example" {
		t.Errorf("401 to an allowed origin: %d %v", code, h)
	}
}

// TestEventsStream: what an operator's script sees while models come and go.
func TestEventsStream(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, adminConfig))
	admin := client{t, url, "admin-key"}
	req, _ := http.NewRequest("GET", url+"/admin/events?logs=true", nil)
	req.Header.Set("Authorization", "Bearer admin-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	events := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var e map[string]any
				json.Unmarshal([]byte(data), &e)
				events <- e
			}
		}
		close(events)
	}()
	admin.json("POST", "/admin/models/b/load", "", 200, nil)
	admin.json("POST", "/admin/models/huge/load", "", 503, nil)
	admin.json("POST", "/admin/models/b/unload", "", 200, nil)
	want := []string{"start b", "ready b", "refuse huge", "unload b", "stop b", "log "}
	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < len(want) {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("the event stream ended")
			}
			model, _ := e["model"].(string)
			typ, _ := e["type"].(string)
			key := typ + " " + model
			if e["type"] == "log" {
				key = "log "
			}
			if slices.Contains(want, key) {
				seen[key] = true
			}
		case <-deadline:
			t.Fatalf("events seen %v, want %v", seen, want)
		}
	}
}

func TestMetricsMove(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
memory: {limit_ram: 50MiB}   # any two of a, b and crashy do not fit together
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 30MiB}}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 30MiB}}
  crashy: {cmd: "MOCK -port ${PORT} -model ${MODEL} -crash-after 1", memory: {ram: 30MiB}}
  huge: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 64TiB}}
`))
	c := client{t, url, ""}
	metric := func(name string) float64 {
		t.Helper()
		v, _ := c.metric(name)
		return v
	}
	const reqs = `hotswap_requests_total{endpoint="chat/completions",model="a",status="200"}`
	for i := 1; i <= 3; i++ {
		c.json("POST", "/v1/chat/completions", `{"model":"a","messages":[]}`, 200, nil)
		if got := metric(reqs); got != float64(i) {
			t.Errorf("after %d requests: %s = %v", i, reqs, got)
		}
	}
	if metric(`hotswap_backend_starts_total{model="a"}`) != 1 || metric(`hotswap_models_loaded`) != 1 ||
		metric(`hotswap_model_state{model="a",state="ready"}`) != 1 ||
		metric(`hotswap_wait_seconds_count{cause="loading",model="a"}`) < 1 {
		t.Error("a's start is not counted")
	}
	c.json("POST", "/admin/models/a/unload", "", 200, nil)
	if got := metric(`hotswap_evictions_total{model="a",reason="unload"}`); got != 1 {
		t.Errorf("evictions by unload: %v", got)
	}
	// A swap: b does not fit beside a.
	c.json("POST", "/v1/chat/completions", `{"model":"a","messages":[]}`, 200, nil)
	c.json("POST", "/v1/chat/completions", `{"model":"b","messages":[]}`, 200, nil)
	if got := metric(`hotswap_evictions_total{model="a",reason="making_room"}`); got != 1 {
		t.Errorf("evictions to make room: %v", got)
	}
	if metric(`hotswap_cooldown_seconds_count`) < 1 || metric(`hotswap_backend_starts_total{model="a"}`) != 2 ||
		metric(`hotswap_model_state{model="a",state="stopped"}`) != 1 {
		t.Error("the swap is not counted")
	}
	c.json("POST", "/v1/chat/completions", `{"model":"huge","messages":[]}`, 503, nil)
	if got := metric(`hotswap_insufficient_memory_total{model="huge"}`); got != 1 {
		t.Errorf("refusals: %v", got)
	}
	c.do("POST", "/v1/chat/completions", `{"model":"crashy","messages":[]}`)
	if !mocktest.Eventually(5*time.Second, func() bool { return metric(`hotswap_backend_crashes_total{model="crashy"}`) == 1 }) {
		t.Errorf("crashes: %v", metric(`hotswap_backend_crashes_total{model="crashy"}`))
	}
	if got := metric(`hotswap_requests_total{endpoint="chat/completions",model="crashy",status="502"}`); got != 1 {
		t.Errorf("the crashed request: %v", got)
	}
	if metric(`hotswap_memory_total_bytes{device="ram"}`) <= 0 {
		t.Error("no memory total")
	}
	if metric(`hotswap_footprint_bytes{device="ram",model="a"}`) <= 0 {
		t.Error("no learned footprint for a")
	}
}

// reloadable is the first configuration of the reload tests; each test
// rewrites the file.
const reloadable = `
ports: 22000-22999
stop_timeout: 2s
models:
  keep: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  change: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  gone: {cmd: "MOCK -port ${PORT} -model ${MODEL} -latency 1s"}
`

func TestReload(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, reloadable)
	cmd, url, logs := startLogged(t, b, cfg)
	c := client{t, url, ""}
	keepPid := chatKey(t, url, "keep")
	changePid := chatKey(t, url, "change")
	chatKey(t, url, "gone")

	rewrite := func(text string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(text, "MOCK", b.mock)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A bad file changes nothing, and every problem is named.
	rewrite(`
models:
  keep: {cmd: "MOCK -port ${PORT}", memory: {ram: 6XB}}
  new: {cmd: "MOCK -port ${PORT}", ttl: soon}
`)
	code, body, _ := c.do("POST", "/admin/reload", "")
	if code != 400 || errCode(body) != "invalid_config" || !strings.Contains(string(body), "models.keep.memory.ram") ||
		!strings.Contains(string(body), "models.new.ttl") {
		t.Errorf("bad reload: %d %s", code, body)
	}
	if got := chatKey(t, url, "keep"); got != keepPid {
		t.Errorf("keep changed after a refused reload: pid %d, was %d", got, keepPid)
	}

	// gone is serving a slow request when it is removed: it is answered.
	slow := make(chan int, 1)
	go func() {
		code, _, _ := c.do("POST", "/v1/chat/completions", `{"model":"gone","messages":[]}`)
		slow <- code
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return c.running()["gone"].InFlight == 1 }) {
		t.Fatal("the slow request did not reach gone")
	}
	rewrite(`
ports: 22000-22999
stop_timeout: 2s
api_keys: [k2]
models:
  keep: {cmd: "MOCK -port ${PORT} -model ${MODEL}", ttl: 1h}
  change: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 3", env: ["X=1"]}
  added: {cmd: "MOCK -port ${PORT} -model ${MODEL}", aliases: [newbie]}
`)
	var res control.ReloadResult
	c.json("POST", "/admin/reload", "", 200, &res)
	if !slices.Equal(res.Added, []string{"added"}) || !slices.Equal(res.Removed, []string{"gone"}) ||
		!slices.Equal(res.Restart, []string{"change"}) || !slices.Equal(res.Changed, []string{"keep"}) {
		t.Errorf("reload: %+v", res)
	}
	if code := <-slow; code != 200 {
		t.Errorf("the request in flight on a removed model: %d", code)
	}
	// Keys apply at once.
	if code, _, _ := c.do("GET", "/v1/models", ""); code != 401 {
		t.Errorf("without the new key: %d", code)
	}
	c.key = "k2"
	// The removed model is drained, stopped and gone; new ones are known.
	if !mocktest.Eventually(10*time.Second, func() bool { _, ok := c.running()["gone"]; return !ok }) {
		t.Error("gone still running")
	}
	if code, body, _ := c.do("POST", "/v1/chat/completions", `{"model":"gone","messages":[]}`); code != 404 ||
		errCode(body) != "model_not_found" {
		t.Errorf("request for a removed model: %d %s", code, body)
	}
	if code, _, h := c.do("POST", "/v1/chat/completions", `{"model":"newbie","messages":[]}`); code != 200 ||
		h.Get("X-Mock-Model") != "added" {
		t.Errorf("request for an added model by its alias: %d", code)
	}
	// change restarts (it was idle) with its new command; keep does not.
	if !mocktest.Eventually(10*time.Second, func() bool {
		r := c.running()["change"]
		return r.State == "ready" && r.Pid != changePid
	}) {
		t.Errorf("change was not restarted: %+v", c.running()["change"])
	}
	if mocktest.Alive(changePid) {
		t.Errorf("change's old process %d is still alive", changePid)
	}
	if argv, _ := os.ReadFile("/proc/" + strconv.Itoa(c.running()["change"].Pid) + "/cmdline"); !strings.Contains(string(argv), "-tokens\x003") {
		t.Errorf("change runs %q, not its new command", argv)
	}
	if code, body, _ := c.do("POST", "/v1/chat/completions", `{"model":"change","messages":[]}`); code != 200 {
		t.Errorf("change after reload: %d %s", code, body)
	}
	r := c.running()["keep"]
	if r.Pid != keepPid || r.TTLLeftSeconds == nil {
		t.Errorf("keep: %+v (pid was %d): a ttl applies at once, without a restart", r, keepPid)
	}

	// SIGHUP reloads too.
	rewrite(`
ports: 22000-22999
models:
  keep: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`)
	reloads := strings.Count(logs.String(), "configuration reloaded")
	cmd.Process.Signal(syscall.SIGHUP)
	c.key = ""
	if !mocktest.Eventually(10*time.Second, func() bool {
		code, _, _ := c.do("GET", "/v1/models/added", "")
		return code == 404
	}) {
		t.Error("SIGHUP did not reload")
	}
	if !mocktest.Eventually(5*time.Second, func() bool {
		return strings.Count(logs.String(), "configuration reloaded") > reloads
	}) {
		t.Error("the SIGHUP reload is not in the log")
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return len(c.running()) == 1 }) {
		t.Errorf("running after the SIGHUP reload: %v", keys(c.loaded()))
	}
}

// TestNoRequestLostAcrossReloads: clients keep sending while the
// configuration is reloaded again and again; every request is answered.
func TestNoRequestLostAcrossReloads(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, reloadable)
	_, url := start(t, b, cfg)
	c := client{t, url, ""}
	stop := make(chan struct{})
	type result struct{ ok, failed int }
	results := make(chan result, 4)
	for w := 0; w < 4; w++ {
		model := []string{"keep", "change"}[w%2]
		go func() {
			var r result
			for {
				select {
				case <-stop:
					results <- r
					return
				default:
				}
				resp, err := http.Post(url+"/v1/chat/completions", "application/json",
					strings.NewReader(`{"model":"`+model+`","messages":[]}`))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == 200 {
					r.ok++
				} else {
					r.failed++
				}
			}
		}()
	}
	versions := []string{"-tokens 3", "-tokens 5"}
	if !mocktest.Eventually(10*time.Second, func() bool { return c.running()["change"].State == "ready" }) {
		t.Fatal("change never started")
	}
	for i := 0; i < 6; i++ {
		old := c.running()["change"].Pid
		text := strings.ReplaceAll(reloadable, "-model ${MODEL}\"}\n  gone", "-model ${MODEL} "+versions[i%2]+"\"}\n  gone")
		if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(text, "MOCK", b.mock)), 0o644); err != nil {
			t.Fatal(err)
		}
		var res control.ReloadResult
		c.json("POST", "/admin/reload", "", 200, &res)
		if !slices.Equal(res.Restart, []string{"change"}) {
			t.Fatalf("reload %d: %+v", i, res)
		}
		// Each restart happens under load before the next reload.
		if !mocktest.Eventually(10*time.Second, func() bool {
			r := c.running()["change"]
			return r.State == "ready" && r.Pid != old
		}) {
			t.Fatalf("reload %d: change was not restarted under load: %+v", i, c.running()["change"])
		}
	}
	close(stop)
	var total result
	for w := 0; w < 4; w++ {
		r := <-results
		total.ok += r.ok
		total.failed += r.failed
	}
	if total.failed != 0 || total.ok == 0 {
		t.Errorf("%d answered, %d failed across 6 reloads", total.ok, total.failed)
	}
}

// An unload asked while the model is stopping, with a request queued that
// starts it again right after, is answered once that stop is over: it used
// to wait for a Stopped state that the restart never let it see (found by
// the soak).
func TestUnloadWhileStoppingWithARequestQueued(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
stop_timeout: 1s
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -ignore-sigterm"}
`))
	c := client{t: t, url: url}
	c.chat("a") // loaded; its pid
	unload := func() chan int {
		done := make(chan int, 1)
		go func() {
			resp, err := http.Post(url+"/admin/models/a/unload", "application/json", nil)
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		return done
	}
	first := unload()
	// a ignores SIGTERM: it is stopping for a second.
	if !mocktest.Eventually(5*time.Second, func() bool { return c.running()["a"].State == "stopping" }) {
		t.Fatalf("a is %+v", c.running()["a"])
	}
	chatted := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"a","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			chatted <- -1
			return
		}
		resp.Body.Close()
		chatted <- resp.StatusCode
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return c.running()["a"].Queued > 0 }) {
		t.Fatalf("the request is not queued: %+v", c.running()["a"])
	}
	second := unload()
	for i, done := range []chan int{first, second} {
		select {
		case st := <-done:
			if st != 200 {
				t.Errorf("unload %d: status %d", i+1, st)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("unload %d got no answer", i+1)
		}
	}
	if st := <-chatted; st != 200 {
		t.Errorf("the request queued while a stopped: %d", st)
	}
}
