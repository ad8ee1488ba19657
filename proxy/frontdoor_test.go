package proxy_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// The front door: what is decided from a request's headers before its
// body is read (the Host, the page it comes from, the key), what a body
// may cost, and what leaves hotswap (no key of its own, in any answer,
// log line or request to a backend).

const apiKey = "sk-frontdoor-api-0123456789"

const keyedConfig = `
api_keys: [` + apiKey + `]
ports: 20000-20999
max_body: 1MiB
server:
  body_memory: 2MiB
  header_timeout: 5s
models:
  chat:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
`

func TestEveryKeyStyleClientsUse(t *testing.T) {
	s := newStack(t, keyedConfig)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		header, value string
		ok            bool
	}{
		{"Authorization", "Bearer " + apiKey, true},
		{"Authorization", "bearer " + apiKey, true}, // some clients lower-case the scheme
		{"Authorization", "BEARER   " + apiKey + " ", true},
		{"X-Api-Key", apiKey, true}, // Anthropic's SDKs
		{"x-api-key", " " + apiKey, true},
		{"Api-Key", apiKey, true},                          // Azure OpenAI's
		{"Authorization", basic("anyone", apiKey), true},   // the key as the password
		{"Authorization", basic(apiKey, ""), true},         // curl -u KEY:
		{"Authorization", basic("", apiKey), true},         // -u :KEY
		{"Authorization", "Bearer wrong", false},           // a wrong key
		{"Authorization", "Bearer", false},                 // no key
		{"Authorization", apiKey, false},                   // no scheme
		{"Authorization", "Token " + apiKey, false},        // a scheme hotswap does not take
		{"Authorization", basic(apiKey, "x"), false},       // a password that is not the key
		{"Authorization", "Basic !!!" + apiKey, false},     // not base64
		{"X-Api-Key", "Bearer " + apiKey, false},           // x-api-key holds the key alone
		{"X-Api-Key", apiKey[:len(apiKey)-1], false},       // a prefix is not the key
		{"Cookie", "hotswap_session=" + apiKey, false},     // the cookie opens the page, not the API
		{"Proxy-Authorization", "Bearer " + apiKey, false}, // meant for a proxy in between
		{"Authorization", "Bearer " + apiKey + "x", false}, // longer
		{"X-Forwarded-Authorization", "Bearer " + apiKey, false},
	} {
		r := s.do("GET", "/v1/models", "", nil, tc.header, tc.value)
		if tc.ok && r.status != 200 || !tc.ok && r.status != 401 {
			t.Errorf("%s: %q: %d %s", tc.header, tc.value, r.status, r.body)
		}
		if !tc.ok {
			if _, _, code := r.apiError(t); code != "invalid_api_key" {
				t.Errorf("%s: %q: code %q", tc.header, tc.value, code)
			}
		}
	}
}

func TestHostMustBeOneHotswapAnswersTo(t *testing.T) {
	s := newStack(t, "allowed_hosts: [hotswap.lan, \"*.corp.example\"]\n"+baseConfig)
	port := s.url[strings.LastIndexByte(s.url, ':'):]
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1" + port, true},
		{"127.0.0.2", true},
		{"[::1]" + port, true},
		{"localhost" + port, true},
		{"LocalHost", true},
		{"app.localhost" + port, true},
		{"hotswap.lan" + port, true},  // allowed_hosts
		{"HOTSWAP.LAN." + port, true}, // names ignore case and a final dot
		{"gpu.corp.example", true},    // under a wildcard
		{"corp.example", false},       // the wildcard's domain itself is not under it
		{"attacker.example" + port, false},
		{"127.0.0.1.attacker.example", false}, // a name that starts like an address
		{"localhost.attacker.example", false},
		{"hotswap.lan.attacker.example", false},
	} {
		req, _ := http.NewRequest("GET", s.url+"/v1/models", nil)
		req.Host = tc.host
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := response{status: resp.StatusCode, header: resp.Header, body: b}
		if tc.ok && r.status != 200 {
			t.Errorf("Host %s: %d %s", tc.host, r.status, b)
		}
		if !tc.ok {
			if r.status != 403 {
				t.Errorf("Host %s: %d, want 403", tc.host, r.status)
				continue
			}
			if msg, _, code := r.apiError(t); code != "host_not_allowed" || !strings.Contains(msg, "allowed_hosts") {
				t.Errorf("Host %s: %q %q", tc.host, code, msg)
			}
		}
	}
	// /health answers monitors whatever name they use.
	req, _ := http.NewRequest("GET", s.url+"/health", nil)
	req.Host = "monitor.example"
	if resp, err := s.client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("/health under another name: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if n := s.starts.Starts(); n != 0 {
		t.Errorf("%d backends started", n)
	}
}

func TestPagesOfOtherSitesAreRefused(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keys=%v", keyed), func(t *testing.T) {
			cfg := "cors_origins: [\"http://chat.example:3000\"]\n" + baseConfig
			auth := []string{}
			if keyed {
				cfg = "api_keys: [" + apiKey + "]\n" + cfg
				// A browser's page cannot hold hotswap's key unless
				// someone gave it: even with it, another site is refused.
				auth = []string{"Authorization", "Bearer " + apiKey}
			}
			s := newStack(t, cfg)
			chat := `{"model":"chat-b","messages":[{"role":"user","content":"hi"}]}`
			send := func(header ...string) response {
				return s.do("POST", "/v1/chat/completions", "text/plain", []byte(chat), append(header, auth...)...)
			}
			// A "simple" request (no preflight) from another site: its
			// Origin, or only Sec-Fetch-Site where a browser sends none.
			for _, h := range [][]string{
				{"Origin", "https://attacker.example"},
				{"Origin", "null"}, // a sandboxed frame, a file:// page
				{"Origin", "http://127.0.0.1.attacker.example"},
				{"Sec-Fetch-Site", "cross-site"},
				{"Sec-Fetch-Site", "same-site"}, // another port of this machine is another site's page
				{"Origin", "http://localhost:9999", "Sec-Fetch-Site", "same-site"},
			} {
				r := send(h...)
				if r.status != 403 {
					t.Errorf("%q: %d %s", h, r.status, r.body)
					continue
				}
				if msg, _, code := r.apiError(t); code != "origin_not_allowed" || !strings.Contains(msg, "cors_origins") {
					t.Errorf("%q: %s %s", h, code, msg)
				}
			}
			// Nothing was started for them.
			if n := s.starts.Starts(); n != 0 {
				t.Fatalf("%d backends started for refused requests", n)
			}
			// A GET from another site (an <img>, a link fetched by script)
			// is refused as well: it could start a model.
			if r := s.do("GET", "/v1/models", "", nil, append([]string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}, auth...)...); r.status != 403 {
				t.Errorf("cross-site GET: %d", r.status)
			}
			// hotswap's own origin, an allowed origin, and clients that
			// are not browsers (no Origin, no Sec-Fetch-Site) go on.
			for _, h := range [][]string{
				{"Origin", s.url, "Sec-Fetch-Site", "same-origin"},
				{"Origin", "http://chat.example:3000", "Sec-Fetch-Site", "cross-site"},
				{"Sec-Fetch-Site", "none"}, // typed into the address bar
				{},
			} {
				if r := send(h...); r.status != 200 {
					t.Errorf("%q: %d %s", h, r.status, r.body)
				}
			}
			// A link from another site to the status page opens it.
			r := s.do("GET", "/ui/", "", nil, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")
			if r.status == 403 {
				t.Errorf("a navigation to the status page: %d %s", r.status, r.body)
			}
		})
	}
}

// TestAuthBeforeBody: a request without a key is refused once its headers
// are in, without hotswap reading (or waiting for) its body: fasthttp
// takes at most its first 8KiB; with Expect: 100-continue, nothing.
func TestAuthBeforeBody(t *testing.T) {
	s := newStack(t, keyedConfig)
	c := s.dialFrom("127.0.0.1")
	// 900KiB announced, 16KiB sent: the answer comes anyway.
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		900<<10, strings.Repeat("x", 16<<10))
	resp, body, err := readAnswer(c)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	if resp.StatusCode != 401 || errorCode(body) != "invalid_api_key" {
		t.Errorf("%d %s", resp.StatusCode, body)
	}

	c = s.dialFrom("127.0.0.1")
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", 900<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 401") || strings.Contains(string(b), "100 Continue") {
		t.Errorf("with Expect: %.200q", b)
	}
	// The same with the key: 100 Continue, then the body is read.
	c = s.dialFrom("127.0.0.1")
	chat := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", apiKey, len(chat))
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("with the key: %q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, chat)
	if r, err := http.ReadResponse(br, nil); err != nil || r.StatusCode != 200 {
		t.Errorf("with the key: %v %v", r, err)
	}
}

// TestBodyMemoryIsBounded: bodies in flight count against
// server.body_memory; one that would pass it is refused with 503 and
// Retry-After before it is read, and is taken once the others are done.
func TestBodyMemoryIsBounded(t *testing.T) {
	s := newStack(t, keyedConfig) // max_body 1MiB, body_memory 2MiB
	const size = 900 << 10
	head := func(n int) string {
		return fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", apiKey, n)
	}
	body := `{"model":"nobody","x":"` + strings.Repeat("x", size-len(`{"model":"nobody","x":""}`)) + `"}`
	// Two uploads that stop half way: hotswap holds 1.8MiB for them.
	var slow []net.Conn
	for range 2 {
		c := s.dialFrom("127.0.0.1")
		io.WriteString(c, head(size)+body[:size/2])
		slow = append(slow, c)
	}
	// A third does not fit once they hold theirs: refused, its body
	// unread. (Sent whole, so that one let in before them is answered.)
	refused := func() bool {
		c := s.dialFrom("127.0.0.1")
		go io.WriteString(c, head(size)+body)
		resp, b, err := readAnswer(c)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 503 {
			if errorCode(b) != "body_memory_full" || resp.Header.Get("Retry-After") == "" {
				t.Errorf("refused with %s, Retry-After %q", b, resp.Header.Get("Retry-After"))
			}
			return true
		}
		return false
	}
	if !mocktest.Eventually(10*time.Second, refused) {
		t.Fatal("a third body over server.body_memory was not refused")
	}
	// A small one still fits.
	if r := s.do("POST", "/v1/chat/completions", "application/json", []byte(`{"model":"nobody"}`), "Authorization", "Bearer "+apiKey); r.status != 404 {
		t.Errorf("a small body beside them: %d %s", r.status, r.body)
	}
	// The two end; their memory is let go, and the next big one is read.
	var wg sync.WaitGroup
	for _, c := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.WriteString(c, body[size/2:])
			resp, b, err := readAnswer(c)
			if err != nil || resp.StatusCode != 404 || errorCode(b) != "model_not_found" {
				t.Errorf("a slow upload: %v %v %s", resp, err, b)
			}
		}()
	}
	wg.Wait()
	if r := s.do("POST", "/v1/chat/completions", "application/json", []byte(body), "Authorization", "Bearer "+apiKey); r.status != 404 {
		t.Errorf("after the others ended: %d %s", r.status, r.body)
	}
	// A chunked body grows against the budget too, and past max_body is
	// refused.
	c := s.dialFrom("127.0.0.1")
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n", apiKey)
	go func() {
		chunk := strings.Repeat("y", 64<<10)
		for range 20 {
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				return
			}
		}
	}()
	if resp, b, err := readAnswer(c); err != nil || resp.StatusCode != 413 {
		t.Errorf("a chunked body past max_body: %v %v %s", resp, err, b)
	}
}

// TestMalformedRequestsEchoNoKey: requests fasthttp cannot parse are
// answered 400 in hotswap's words; neither the answer nor the log quotes
// the header block with the key in it.
func TestMalformedRequestsEchoNoKey(t *testing.T) {
	s := newStack(t, keyedConfig)
	auth := "Authorization: Bearer " + apiKey + "\r\n"
	for _, raw := range []string{
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Content-Length: -1\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Content-Length: x\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "no colon here\r\n\r\n",
		"GET /v1/mo\x00dels HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + apiKey + "\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
	} {
		got := s.rawExchange(raw)
		if !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, "malformed_request") {
			t.Errorf("%q: answered %.200q", raw, got)
		}
		if strings.Contains(got, apiKey) || strings.Contains(got, "Bearer") {
			t.Errorf("%q: the answer quotes the request: %q", raw, got)
		}
	}
	// A key where hotswap echoes the client's words: a model name, a path.
	for _, r := range []response{
		s.do("POST", "/v1/chat/completions", "application/json", []byte(`{"model":"`+apiKey+`"}`), "Authorization", "Bearer "+apiKey),
		s.do("GET", "/v1/models/"+apiKey, "", nil, "Authorization", "Bearer "+apiKey),
		s.do("GET", "/"+apiKey, "", nil),
	} {
		if r.status != 404 || strings.Contains(string(r.body), apiKey) {
			t.Errorf("%d %s", r.status, r.body)
		}
	}
	for _, e := range s.logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, apiKey) {
			t.Errorf("the key is logged: %s", line)
		}
		// An error answer's line counts the error body it sent.
		if f := e.ContextMap(); e.Message == "request" && f["status"] == int64(404) && f["bytes"] == int64(0) {
			t.Errorf("a 404's log line says it sent nothing: %v", f)
		}
	}
}

// TestCredentialsStayInHotswap: the backend gets the model's own headers
// (its key, from the environment), and never hotswap's key nor the status
// page's cookie, whichever header carried them; a client's other cookies
// and headers go on.
func TestCredentialsStayInHotswap(t *testing.T) {
	t.Setenv("HS_TEST_BACKEND_KEY", "sk-backend-own")
	addr, seen := mocktest.HeaderRecorder(t)
	s := newStack(t, `
api_keys: [`+apiKey+`]
admin_keys: [sk-frontdoor-admin]
ports: 20000-20999
models:
  remote:
    # A process to start, and the backend hotswap forwards to.
    cmd: MOCK -listen 127.0.0.1:0 -progress-interval 0
    proxy: http://`+addr+`
    headers:
      Authorization: Bearer ${env:HS_TEST_BACKEND_KEY}
      X-Team: ml
`)
	body := []byte(`{"model":"remote"}`)
	for _, auth := range [][]string{
		{"Authorization", "Bearer " + apiKey},
		{"X-Api-Key", apiKey, "Authorization", "Bearer " + apiKey},
		{"Api-Key", apiKey, "Cookie", "hotswap_session=abc; theme=dark", "X-Api-Key", "sk-frontdoor-admin"},
	} {
		r := s.do("POST", "/v1/chat/completions", "application/json", body, append(auth, "X-Client", "kept")...)
		if r.status != 200 {
			t.Fatalf("%q: %d %s", auth, r.status, r.body)
		}
		var h http.Header
		select {
		case h = <-seen:
		case <-time.After(10 * time.Second):
			t.Fatal("the backend got no request")
		}
		for name, values := range h {
			for _, v := range values {
				if strings.Contains(v, apiKey) || strings.Contains(v, "sk-frontdoor-admin") || strings.Contains(v, "hotswap_session") {
					t.Errorf("%q: the backend got %s: %s", auth, name, v)
				}
			}
		}
		if got := h.Get("Authorization"); got != "Bearer sk-backend-own" {
			t.Errorf("%q: the backend's Authorization is %q", auth, got)
		}
		if h.Get("X-Team") != "ml" || h.Get("X-Client") != "kept" {
			t.Errorf("%q: X-Team %q, X-Client %q", auth, h.Get("X-Team"), h.Get("X-Client"))
		}
		if auth[0] == "Api-Key" && h.Get("Cookie") != "theme=dark" {
			t.Errorf("the client's own cookie: %q", h.Get("Cookie"))
		}
	}
}
