package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/metrics"
)

// The status page's access and the endpoints it is built on, without a
// browser (ui/ drives one): what any client of hotswap can check.

// noRedirect is a client that shows redirects rather than following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestStatusPageAccess(t *testing.T) {
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, adminConfig))
	// send sends a request with the headers given (name, value, ...),
	// without following a redirect.
	send := func(method, path, body string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	get := func(path string, header ...string) *http.Response {
		t.Helper()
		return send("GET", path, "", header...)
	}
	signIn := func(key string, header ...string) *http.Response {
		t.Helper()
		return send("POST", "/ui/login", url.Values{"key": {key}}.Encode(),
			append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
	}

	// A browser without the cookie is sent to sign in; a script is told.
	if r := get("/ui/", "Accept", "text/html"); r.StatusCode != 303 || r.Header.Get("Location") != "/ui/login" {
		t.Errorf("a browser, not signed in: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := get("/ui/app.js"); r.StatusCode != 401 {
		t.Errorf("the page's script, not signed in: %d", r.StatusCode)
	}
	if r := get("/ui"); r.StatusCode != 301 || r.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := get("/ui/login"); r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("the sign-in page: %d %v", r.StatusCode, r.Header)
	}
	// Wrong keys and the API's key are refused, and a form posted from
	// another site is not even read, with no cookie.
	for i, r := range []*http.Response{signIn("wrong"), signIn("user-key"), signIn("admin-key", "Origin", "http://evil.example"),
		signIn("admin-key", "Origin", "null")} {
		if want := []int{401, 401, 403, 403}[i]; r.StatusCode != want || len(r.Cookies()) > 0 {
			t.Errorf("refused sign-in %d answered %d (want %d), cookies %v", i, r.StatusCode, want, r.Cookies())
		}
	}
	r := signIn("admin-key", "Origin", base)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/ui/" || len(r.Cookies()) != 1 {
		t.Fatalf("sign-in: %d %v", r.StatusCode, r.Header)
	}
	c := r.Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || strings.Contains(c.Value, "admin-key") {
		t.Errorf("the cookie: %+v", c)
	}
	cookie := c.Name + "=" + c.Value

	// The cookie opens the page and the admin API, from hotswap's own
	// pages only.
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css", "/admin/models", "/admin/history", "/metrics"} {
		if r := get(p, "Cookie", cookie); r.StatusCode != 200 {
			t.Errorf("%s with the cookie: %d", p, r.StatusCode)
		}
	}
	if r := get("/ui/app.js", "Cookie", cookie); !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") ||
		r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("app.js headers: %v", r.Header)
	}
	u, _ := url.Parse(base)
	same := client{t, base, ""}
	if code, _, _ := same.do("POST", "/admin/models/b/load", "", "Cookie", cookie, "Origin", "http://"+u.Host); code != 200 {
		t.Errorf("a load from the page: %d", code)
	}
	if code, body, _ := same.do("POST", "/admin/unload", "", "Cookie", cookie, "Origin", "http://evil.example"); code != 403 {
		t.Errorf("a command from another site with the cookie: %d %s", code, body)
	}
	// Behind a reverse proxy, the page's origin is the proxy's host.
	if code, body, _ := same.do("POST", "/admin/models/b/load", "", "Cookie", cookie, "Origin", "https://models.example",
		"X-Forwarded-Host", "models.example"); code != 200 {
		t.Errorf("a load from the page behind a proxy: %d %s", code, body)
	}
	// Another site cannot make a browser send that header: its preflight
	// is refused.
	if code, _, _ := same.do("OPTIONS", "/admin/unload", "", "Origin", "http://evil.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "x-forwarded-host"); code < 400 {
		t.Errorf("a preflight for the admin API: %d", code)
	}
	if running := (client{t, base, "admin-key"}).running(); running["b"].State != "ready" {
		t.Errorf("another site's command went through: %+v", running)
	}
	// A cookie for another key, or a made-up one, is nothing.
	if r := get("/admin/models", "Cookie", "hotswap_session=00ff"); r.StatusCode != 401 {
		t.Errorf("a made-up cookie: %d", r.StatusCode)
	}
	// The API's key does not open the page; the admin key as Bearer does.
	if r := get("/ui/", "Authorization", "Bearer user-key"); r.StatusCode != 401 {
		t.Errorf("the API's key: %d", r.StatusCode)
	}
	if r := get("/ui/", "Authorization", "Bearer admin-key"); r.StatusCode != 200 {
		t.Errorf("the admin key: %d", r.StatusCode)
	}
	for path, want := range map[string]int{"/ui/nothing.js": 404, "/ui/../config.yaml": 404, "/ui/static/app.js": 404} {
		if r := get(path, "Cookie", cookie); r.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, r.StatusCode, want)
		}
	}
	if code, _, _ := same.do("POST", "/ui/", "", "Cookie", cookie); code != 405 {
		t.Errorf("POST /ui/: %d", code)
	}
	// Signing out ends the cookie in the browser.
	out := send("POST", "/ui/logout", "")
	if out.StatusCode != 303 || len(out.Cookies()) != 1 || out.Cookies()[0].Value != "" || !out.Cookies()[0].Expires.Before(time.Now()) {
		t.Errorf("sign out: %d %v", out.StatusCode, out.Cookies())
	}
}

func TestAdminModelsAndHistory(t *testing.T) {
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, strings.Replace(adminConfig, "modes:", `
  broken: {cmd: "MOCK -port ${PORT} -model ${MODEL} -no-such-flag", memory: {ram: 10MiB}}
modes:`, 1)))
	admin := client{t, base, "admin-key"}
	user := client{t, base, "user-key"}
	models := func() map[string]control.ModelStatus {
		t.Helper()
		var list []control.ModelStatus
		admin.json("GET", "/admin/models", "", 200, &list)
		out := map[string]control.ModelStatus{}
		for i, r := range list {
			out[r.Model] = r
			if want := []string{"a", "b", "c", "huge", "broken"}[i]; r.Model != want {
				t.Errorf("model %d is %s, want %s (configuration order)", i, r.Model, want)
			}
		}
		return out
	}
	m := models()
	if len(m) != 5 || m["a"].State != "stopped" || m["a"].DeclaredRAM != 10<<20 || m["c"].TTLSeconds != 3600 ||
		m["a"].StateSeconds != nil {
		t.Errorf("at start: %+v", m)
	}
	user.chat("c")
	admin.json("POST", "/admin/models/broken/load", "", 503, nil)
	m = models()
	if c := m["c"]; c.State != "ready" || c.Pid == 0 || c.StateSeconds == nil || c.TTLLeftSeconds == nil || *c.TTLLeftSeconds > 3600 {
		t.Errorf("c, ready: %+v", c)
	}
	if br := m["broken"]; br.State != "failed" || br.RetryInSeconds <= 0 || !strings.Contains(br.LastError, "no-such-flag") {
		t.Errorf("broken, failed: %+v", br)
	}
	// /admin/running still lists only what runs.
	if r := admin.running(); len(r) != 1 || r["c"].State != "ready" {
		t.Errorf("running: %+v", r)
	}
	if code, _, _ := admin.do("POST", "/admin/models", ""); code != 405 {
		t.Errorf("POST /admin/models: %d", code)
	}
	if code, _, _ := user.do("GET", "/admin/models", ""); code != 401 {
		t.Errorf("/admin/models with the API key: %d", code)
	}

	// The history gets a point every 5 s, with the requests answered in
	// it (the 503 above is an error).
	var h metrics.History
	mocktest.Eventually(15*time.Second, func() bool {
		admin.json("GET", "/admin/history", "", 200, &h)
		return len(h.Points) > 0
	})
	if h.IntervalSeconds != 5 || len(h.Points) == 0 {
		t.Fatalf("history: %+v", h)
	}
	var requests, errors uint64
	for _, p := range h.Points {
		requests += p.Requests
		errors += p.Errors
	}
	if requests < 2 || errors < 1 {
		t.Errorf("history counts %d requests, %d errors: %+v", requests, errors, h.Points)
	}
}

// TestEventsResume: a watcher that lost its stream (a browser's
// EventSource reconnecting) gets what it missed, once.
func TestEventsResume(t *testing.T) {
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, adminConfig))
	admin := client{t, base, "admin-key"}
	// read opens the stream with header and returns the first n events'
	// ids and "type model".
	read := func(n int, path string, header ...string) ([]uint64, []string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer admin-key")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("events %s: %d", path, resp.StatusCode)
		}
		var ids []uint64
		var what []string
		sc := bufio.NewScanner(resp.Body)
		got := make(chan struct{})
		go func() {
			defer close(got)
			var id uint64
			for sc.Scan() && len(what) < n {
				line := sc.Text()
				if v, ok := strings.CutPrefix(line, "id: "); ok {
					id, _ = strconv.ParseUint(v, 10, 64)
				}
				if data, ok := strings.CutPrefix(line, "data: "); ok {
					var e struct{ Type, Model string }
					json.Unmarshal([]byte(data), &e)
					ids, what = append(ids, id), append(what, e.Type+" "+e.Model)
				}
			}
		}()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			resp.Body.Close()
			<-got
			t.Fatalf("events %s: got %v of %d", path, what, n)
		}
		return ids, what
	}
	admin.json("POST", "/admin/models/b/load", "", 200, nil)
	admin.json("POST", "/admin/models/b/unload", "", 200, nil)
	// Everything kept: start, ready, (footprint,) unload, stop, in order.
	ids, all := read(4, "/admin/events?since=0")
	if all[0] != "start b" || all[1] != "ready b" {
		t.Errorf("since=0: %v", all)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Errorf("ids not in order: %v", ids)
		}
	}
	// After the first: from the second on; Last-Event-ID wins over since.
	_, rest := read(2, "/admin/events?since=0", "Last-Event-ID", strconv.FormatUint(ids[0], 10))
	if rest[0] != all[1] || rest[1] != all[2] {
		t.Errorf("after %d: %v, want %v", ids[0], rest, all[1:3])
	}
	if code, body, _ := admin.do("GET", "/admin/events?since=yesterday", ""); code != 400 || errCode(body) != "invalid_value" {
		t.Errorf("a bad since: %d %s", code, body)
	}
}
