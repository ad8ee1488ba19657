package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// hotswap's front door, probed through the binary as a hostile client, a
// web page and a careful operator would: what leaves it, what it reads
// before it knows who is asking, and who may steer it.

const (
	leakAPIKey   = "sk-hs-api-SECRET-9f8e7d6c"
	leakAdminKey = "sk-hs-admin-SECRET-1a2b3c4d"
)

const frontdoorConfig = `
log_level: debug
api_keys: [` + leakAPIKey + `]
admin_keys: [` + leakAdminKey + `]
ports: 22000-22999
stop_timeout: 2s
server:
  header_timeout: 1s
models:
  m: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
`

// rawExchange sends raw bytes to hotswap on a connection of their own and
// returns all it answers until it closes (or 5s pass).
func rawExchange(t *testing.T, base, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestNoKeyLeaves sends every malformed shape that used to put the header
// block in a log line and an answer, with each key in each header clients
// put one, and searches every answer, every log line (at debug) and the
// event stream for the keys.
func TestNoKeyLeaves(t *testing.T) {
	b := build(t)
	cmd, base, logs := startLogged(t, b, writeConfig(t, b, frontdoorConfig))

	// The event stream, with log lines, as the status page reads it.
	var events strings.Builder
	var evMu sync.Mutex
	req, _ := http.NewRequest("GET", base+"/admin/events?logs=true", nil)
	req.Header.Set("X-Api-Key", leakAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v %v", resp, err)
	}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			evMu.Lock()
			events.WriteString(sc.Text() + "\n")
			evMu.Unlock()
		}
	}()
	eventText := func() string { evMu.Lock(); defer evMu.Unlock(); return events.String() }

	creds := []string{
		"Authorization: Bearer " + leakAPIKey,
		"Authorization: Basic " + basicKey(leakAdminKey),
		"X-Api-Key: " + leakAdminKey,
		"api-key: " + leakAPIKey,
		"Cookie: hotswap_session=" + leakAdminKey + "; other=" + leakAPIKey,
		"Proxy-Authorization: Bearer " + leakAPIKey,
	}
	shapes := []string{
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nContent-Length: -1\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nContent-Length: x\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\na header line without a colon\r\n\r\n",
		"GET /v1/mo\x00dels HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n\r\n",
		"GET /v1/models HTTP/1.1\nHost: 127.0.0.1\n%s\n\n", // bare LF: waits for header_timeout
		"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n",
	}
	var answers []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, shape := range shapes {
		for _, cred := range creds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := rawExchange(t, base, fmt.Sprintf(shape, cred))
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	// Where hotswap echoes a client's words, and a request that goes
	// through to the backend, whose output hotswap logs.
	api := client{t, base, leakAPIKey}
	for _, p := range []string{"/v1/models/" + leakAPIKey, "/" + leakAdminKey, "/upstream/" + leakAPIKey + "/x"} {
		code, body, _ := api.do("GET", p, "")
		answers = append(answers, strconv.Itoa(code)+" "+string(body))
	}
	code, body, _ := api.do("POST", "/v1/chat/completions", `{"model":"`+leakAdminKey+`"}`)
	answers = append(answers, strconv.Itoa(code)+" "+string(body))
	api.chat("m")

	// Each is refused: malformed (400), too slow (408: bare LF never ends
	// the headers), or, where fasthttp could read the headers and the
	// credential is no key (Proxy-Authorization), before its bad body (401).
	answered := 0
	for _, a := range answers {
		for _, refusal := range []string{"HTTP/1.1 400", "HTTP/1.1 401", "HTTP/1.1 408", "404 "} {
			if strings.HasPrefix(a, refusal) {
				answered++
			}
		}
		for _, key := range []string{leakAPIKey, leakAdminKey} {
			if strings.Contains(a, key) {
				t.Errorf("an answer holds a key: %q", a)
			}
		}
		if strings.Contains(a, "hotswap_session") || strings.Contains(a, "other=") {
			t.Errorf("an answer quotes the request's headers: %q", a)
		}
	}
	if answered != len(answers) {
		t.Errorf("%d of %d malformed requests answered with an error", answered, len(answers))
	}
	// Every refusal reached the log and the event stream: the search
	// below is over lines that describe these requests.
	want := len(shapes) * len(creds)
	refusals := func(text string) int {
		return strings.Count(text, `"status": 400`) + strings.Count(text, `"status": 401`) + strings.Count(text, `"status": 408`)
	}
	if !mocktest.Eventually(10*time.Second, func() bool {
		return refusals(logs.String()) >= want && strings.Contains(eventText(), `malformed HTTP request`)
	}) {
		t.Errorf("%d log lines of refusals for %d requests", refusals(logs.String()), want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	for name, text := range map[string]string{"the log": logs.String(), "the event stream": eventText()} {
		for _, key := range []string{leakAPIKey, leakAdminKey} {
			for _, line := range strings.Split(text, "\n") {
				if strings.Contains(line, key) {
					t.Errorf("%s holds a key: %s", name, line)
				}
			}
		}
	}
	if !strings.Contains(logs.String(), "malformed HTTP request") {
		t.Error("the log does not describe the malformed requests")
	}
}

// basicKey is Basic credentials with key as the password.
func basicKey(key string) string { return base64.StdEncoding.EncodeToString([]byte("user:" + key)) }

// TestOtherSitesCannotSteerHotswap: with no keys (the bundled default) and
// with keys, a page of another site cannot make a browser unload models or
// start one, nor reach hotswap through a name rebound to 127.0.0.1; the
// page hotswap serves itself goes on working.
func TestOtherSitesCannotSteerHotswap(t *testing.T) {
	b := build(t)
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keys=%v", keyed), func(t *testing.T) {
			cfg := `
ports: 22000-22999
stop_timeout: 2s
models:
  m: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
  n: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
`
			key := ""
			if keyed {
				cfg = "admin_keys: [admin-key]\napi_keys: [admin-key]\n" + cfg
				key = "admin-key"
			}
			_, base := start(t, b, writeConfig(t, b, cfg))
			c := client{t, base, key}
			c.chat("m")
			u, _ := url.Parse(base)
			_, port, _ := net.SplitHostPort(u.Host)

			// A form or fetch() from another site: a "simple" request,
			// which a browser sends without asking first. (With keys, the
			// cookie would not even be sent: it is SameSite=Strict.)
			for _, attack := range []struct{ method, path, body string }{
				{"POST", "/admin/unload", ""},
				{"POST", "/admin/modes/restore", ""},
				{"POST", "/admin/models/n/load", ""},
				{"POST", "/v1/chat/completions", `{"model":"n","messages":[{"role":"user","content":"hi"}]}`},
				{"GET", "/upstream/n/health", ""},
			} {
				for _, h := range [][]string{
					{"Origin", "https://attacker.example", "Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"},
					{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"},
				} {
					code, body, _ := c.do(attack.method, attack.path, attack.body, h...)
					if code != 403 || errCode(body) != "origin_not_allowed" {
						t.Errorf("%s %s from another site: %d %s", attack.method, attack.path, code, body)
					}
				}
			}
			// DNS rebinding: attacker.example now resolves to 127.0.0.1, so
			// the page is "same origin" with what it calls; the Host says
			// which name it used.
			for _, path := range []string{"/admin/unload", "/v1/models"} {
				req, _ := http.NewRequest("POST", base+path, strings.NewReader(""))
				req.Host = "attacker.example:" + port
				req.Header.Set("Origin", "http://attacker.example:"+port)
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 403 || errCode(body) != "host_not_allowed" {
					t.Errorf("a rebound name on %s: %d %s", path, resp.StatusCode, body)
				}
			}
			admin := client{t, base, key}
			if loaded := admin.loaded(); len(loaded) != 1 || loaded["m"] == 0 {
				t.Fatalf("after the attacks, loaded: %v", loaded)
			}
			// hotswap's own page: its requests are same-origin.
			page := []string{"Origin", base, "Sec-Fetch-Site", "same-origin"}
			if code, body, _ := admin.do("POST", "/admin/models/n/load", "", page...); code != 200 {
				t.Errorf("a load from hotswap's own page: %d %s", code, body)
			}
			if code, _, _ := admin.do("GET", "/ui/", "", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate",
				"Sec-Fetch-Dest", "document"); code != 200 {
				t.Errorf("a link to the status page from another site: %d", code)
			}
		})
	}
}

// TestSessionsExpireAndSignOutRevokes: the page's cookie stands for the
// key for server.session_ttl, is renewed while used, and signing out
// revokes it, so that a copy taken before is refused, after a restart too.
func TestSessionsExpireAndSignOutRevokes(t *testing.T) {
	b := build(t)
	cfgPath := writeConfig(t, b, `
admin_keys: [admin-key]
ports: 22000-22999
server: {session_ttl: 3s}
models:
  m: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`)
	state := t.TempDir()
	cmd, base, _ := launch(t, b, cfgPath, state)
	signIn := func(base string) string {
		req, _ := http.NewRequest("POST", base+"/ui/login", strings.NewReader(url.Values{"key": {"admin-key"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err := noRedirect.Do(req)
		if err != nil || resp.StatusCode != 303 || len(resp.Cookies()) != 1 {
			t.Fatalf("sign in: %v %v", resp, err)
		}
		resp.Body.Close()
		c := resp.Cookies()[0]
		if c.MaxAge != 3 {
			t.Errorf("the cookie lasts %ds, want session_ttl", c.MaxAge)
		}
		return c.Name + "=" + c.Value
	}
	use := func(base, cookie string) (int, []*http.Cookie) {
		req, _ := http.NewRequest("GET", base+"/admin/models", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Cookies()
	}
	a, other := signIn(base), signIn(base)
	if code, _ := use(base, a); code != 200 {
		t.Fatalf("the cookie: %d", code)
	}
	// Used past half its life, it is renewed: the same session, longer.
	var renewed string
	if !mocktest.Eventually(5*time.Second, func() bool {
		code, cookies := use(base, a)
		if code == 200 && len(cookies) == 1 {
			renewed = cookies[0].Name + "=" + cookies[0].Value
		}
		return renewed != ""
	}) {
		t.Fatal("the cookie was not renewed")
	}
	// Unrenewed, a cookie expires.
	if !mocktest.Eventually(10*time.Second, func() bool { code, _ := use(base, a); return code == 401 }) {
		t.Error("the cookie did not expire")
	}
	if code, _ := use(base, renewed); code != 200 {
		t.Errorf("the renewed cookie: %d", code)
	}
	// Signing out revokes the session: the renewed cookie, and any copy.
	other = signIn(base)
	copied := renewed
	req, _ := http.NewRequest("POST", base+"/ui/logout", nil)
	req.Header.Set("Cookie", renewed)
	req.Header.Set("Origin", base)
	if resp, err := noRedirect.Do(req); err != nil || resp.StatusCode != 303 {
		t.Fatalf("sign out: %v %v", resp, err)
	}
	if code, _ := use(base, copied); code != 401 {
		t.Errorf("a copy of a signed-out cookie: %d", code)
	}
	if code, _ := use(base, other); code != 200 {
		t.Errorf("another session after a sign-out: %d", code)
	}
	// hotswap restarts: the revoked session stays revoked, the other one
	// goes on (the status page open through a restart stays signed in).
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	_, base2, _ := launch(t, b, cfgPath, state)
	if code, _ := use(base2, copied); code != 401 {
		t.Errorf("a signed-out cookie after a restart: %d", code)
	}
	if code, _ := use(base2, other); code != 200 {
		t.Errorf("a live session after a restart: %d", code)
	}
}

// vmRSS is a process's resident set, from /proc.
func vmRSS(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, true
		}
	}
	return 0, false
}

// upload sends a request with a body of size bytes (JSON naming model),
// writing it as the server takes it, and returns the answer's status line
// and headers; it stops writing once the answer has come.
func upload(base, header, model string, size int) (status int, retryAfter string, err error) {
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	prefix := `{"model":"` + model + `","x":"`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		header, size, prefix)
	answered := make(chan struct{})
	go func() {
		chunk := []byte(strings.Repeat("a", 64<<10))
		left := size - len(prefix) - 2
		for left > 0 {
			select {
			case <-answered:
				return
			default:
			}
			n := min(left, len(chunk))
			if _, err := c.Write(chunk[:n]); err != nil {
				return
			}
			left -= n
		}
		c.Write([]byte(`"}`))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	close(answered)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// TestUploadFloodsLeaveMemoryAlone: 24 uploads of 60MB at once, without a
// key, cost hotswap nothing (they are refused from their headers); 24
// with the key hold no more than server.body_memory at once, the rest told
// to come back, and their memory is given back once they are done.
//
// Under the race detector (make test) hotswap is built with it too, and
// the bodies it reads grow the detector's shadow memory: there, the
// memory with the key is not measured, only what is answered. Without it
// (go test -run TestUploadFloods ./cmd/hotswap) everything is.
func TestUploadFloodsLeaveMemoryAlone(t *testing.T) {
	if _, ok := vmRSS(os.Getpid()); !ok {
		t.Skip("no /proc: cannot read hotswap's resident memory")
	}
	bn := build(t)
	measureKeyed := len(mocktest.RaceFlags()) == 0
	const budget = 256 << 20
	cmd, base := start(t, bn, writeConfig(t, bn, `
api_keys: [flood-key]
max_body: 64MiB
ports: 22000-22999
server: {body_memory: 256MiB, max_conns_per_ip: 100}
models:
  m: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
`))
	pid := cmd.Process.Pid
	c := client{t, base, "flood-key"}
	for range 20 {
		c.do("GET", "/v1/models", "")
	}
	before, _ := vmRSS(pid)

	// peakDuring runs f while sampling hotswap's RSS, and returns the peak.
	peakDuring := func(f func()) int64 {
		done := make(chan struct{})
		var peak int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if rss, ok := vmRSS(pid); ok && rss > peak {
					peak = rss
				}
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		f()
		close(done)
		wg.Wait()
		return peak
	}
	flood := func(header string) map[int]int {
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, retry, err := upload(base, header, "nobody", 60_000_000)
				if err != nil {
					t.Errorf("upload: %v", err)
					return
				}
				if status == 503 && retry == "" {
					t.Error("a 503 without Retry-After")
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return statuses
	}
	const slack = 20 << 20

	var statuses map[int]int
	peak := peakDuring(func() { statuses = flood("") })
	if statuses[401] != 24 {
		t.Errorf("without a key: %v", statuses)
	}
	t.Logf("without a key: RSS %d MiB before, %d MiB at the peak", before>>20, peak>>20)
	if peak > before+slack {
		t.Errorf("24 uploads without a key took hotswap from %d to %d MiB", before>>20, peak>>20)
	}

	peak = peakDuring(func() { statuses = flood("Authorization: Bearer flood-key\r\n") })
	t.Logf("with the key: %v; RSS peak %d MiB", statuses, peak>>20)
	if statuses[404]+statuses[503] != 24 || statuses[404] == 0 || statuses[503] == 0 {
		t.Errorf("with the key: %v, want each read and answered 404 (no such model) or refused 503", statuses)
	}
	if !measureKeyed {
		t.Log("the race detector is on: hotswap's memory with the key is not measured")
		return
	}
	if peak > before+budget+slack {
		t.Errorf("24 uploads with the key took hotswap from %d to %d MiB; body_memory is %d MiB", before>>20, peak>>20, budget>>20)
	}
	// Once they are gone, so is their memory.
	var after int64
	if !mocktest.Eventually(20*time.Second, func() bool { after, _ = vmRSS(pid); return after <= before+slack }) {
		t.Errorf("after the uploads hotswap holds %d MiB, %d before", after>>20, before>>20)
	}
}

// TestBackendNeverSeesHotswapsKeys: a backend that logs (here, records)
// every header it gets never sees hotswap's keys nor the status page's
// cookie, whichever header a client put them in, and does get the headers
// its model sets, its own key from hotswap's environment among them.
func TestBackendNeverSeesHotswapsKeys(t *testing.T) {
	t.Setenv("HS_TEST_BACKEND_KEY", "sk-the-backends-own")
	addr, seen := mocktest.HeaderRecorder(t)
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, `
api_keys: [`+leakAPIKey+`]
admin_keys: [`+leakAdminKey+`]
ports: 22000-22999
models:
  remote:
    # Started for its lifecycle; hotswap forwards to the server above.
    cmd: MOCK -listen 127.0.0.1:0 -progress-interval 0
    proxy: http://`+addr+`
    headers:
      Authorization: Bearer ${env:HS_TEST_BACKEND_KEY}
`))
	c := client{t, base, ""}
	chat := `{"model":"remote","messages":[{"role":"user","content":"hi"}]}`
	for _, creds := range [][]string{
		{"Authorization", "Bearer " + leakAPIKey},
		{"X-Api-Key", leakAPIKey, "Cookie", "hotswap_session=" + leakAdminKey + "; theme=dark"},
		{"Api-Key", leakAPIKey, "X-Api-Key", leakAdminKey},
		{"Authorization", "Basic " + basicKey(leakAPIKey)},
	} {
		if code, body, _ := c.do("POST", "/v1/chat/completions", chat, creds...); code != 200 {
			t.Fatalf("%q: %d %s", creds, code, body)
		}
		h := <-seen
		for name, values := range h {
			for _, v := range values {
				if strings.Contains(v, leakAPIKey) || strings.Contains(v, leakAdminKey) || strings.Contains(v, "hotswap_session") ||
					strings.Contains(v, basicKey(leakAPIKey)) {
					t.Errorf("%q: the backend got %s: %s", creds, name, v)
				}
			}
		}
		if got := h.Get("Authorization"); got != "Bearer sk-the-backends-own" {
			t.Errorf("%q: the backend's own key: %q", creds, got)
		}
	}
}
