package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestAllowedHosts(t *testing.T) {
	c := mustParse(t, minimal+"allowed_hosts: [Hotswap.LAN., \"*.example.com\", 10.0.0.5, \"[::1]\", \"*\"]\n")
	want := []string{"hotswap.lan", "*.example.com", "10.0.0.5", "[::1]", "*"}
	if !reflect.DeepEqual(c.AllowedHosts, want) {
		t.Errorf("allowed_hosts = %q, want %q", c.AllowedHosts, want)
	}
	for _, bad := range []string{"http://hotswap.lan", "hotswap.lan:8080", "", "a b", "*.*.lan", "-"} {
		got := problems(t, minimal+"allowed_hosts: [\""+bad+"\"]\n")
		if len(got) != 1 || !strings.HasPrefix(got[0], "allowed_hosts[0]: invalid host") {
			t.Errorf("%q: problems %q", bad, got)
		}
	}
}

func TestBodyMemory(t *testing.T) {
	if c := mustParse(t, minimal); c.Server.BodyMemory != DefaultBodyMemory {
		t.Errorf("default body_memory = %d", c.Server.BodyMemory)
	}
	// A larger max_body raises the default, so that its bodies fit.
	if c := mustParse(t, minimal+"max_body: 1GiB\n"); c.Server.BodyMemory != 2<<30 {
		t.Errorf("body_memory with max_body 1GiB = %d, want 2GiB", c.Server.BodyMemory)
	}
	if c := mustParse(t, minimal+"server: {body_memory: 64MiB}\n"); c.Server.BodyMemory != 64<<20 {
		t.Errorf("body_memory = %d", c.Server.BodyMemory)
	}
	got := problems(t, minimal+"max_body: 100MiB\nserver: {body_memory: 64MiB}\n")
	if len(got) != 1 || got[0] != "server.body_memory: 64MiB is less than max_body (100MiB): a body max_body allows could never be read" {
		t.Errorf("problems %q", got)
	}
	if c := mustParse(t, minimal+"server: {session_ttl: 1h}\n"); c.Server.SessionTTL.Hours() != 1 {
		t.Errorf("session_ttl = %v", c.Server.SessionTTL)
	}
}

func TestModelHeaders(t *testing.T) {
	t.Setenv("HS_TEST_BACKEND_KEY", "sk-backend")
	c := mustParse(t, `
models:
  m:
    cmd: server --port ${PORT}
    headers:
      Authorization: Bearer ${env:HS_TEST_BACKEND_KEY}
      X-Team: ml
`)
	want := []Header{{"Authorization", "Bearer sk-backend"}, {"X-Team", "ml"}}
	if got := c.Models["m"].Headers; !reflect.DeepEqual(got, want) {
		t.Errorf("headers = %q, want %q", got, want)
	}

	t.Setenv("HS_TEST_WITH_NEWLINE", "a\r\nX-Evil: 1")
	for _, tc := range []struct{ headers, want string }{
		{"{Authorization: \"Bearer ${env:HS_TEST_NOT_SET}\"}", "models.m.headers.Authorization: the environment variable HS_TEST_NOT_SET is not set"},
		{"{X-Key: \"${env:1BAD}\"}", `models.m.headers.X-Key: invalid environment variable name "1BAD" in ${env:1BAD}`},
		{"{X-Key: \"${env:HS_TEST_WITH_NEWLINE}\"}", "models.m.headers.X-Key: the value holds a line break or NUL"},
		{"{\"Bad Name\": x}", `models.m.headers: invalid header name "Bad Name"`},
		{"{Content-Length: 5}", "models.m.headers.Content-Length: hotswap sets Content-Length itself"},
		{"{X-A: 1, x-a: 2}", "models.m.headers.x-a: set twice (as X-A too): header names ignore case"},
		{"[a, b]", "models.m.headers: must be a mapping, got a list"},
	} {
		got := problems(t, "models:\n  m:\n    cmd: server --port ${PORT}\n    headers: "+tc.headers+"\n")
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("headers %s: problems %q, want %q", tc.headers, got, tc.want)
		}
		for _, p := range got {
			if strings.Contains(p, "X-Evil") {
				t.Errorf("a problem holds the variable's value: %q", p)
			}
		}
	}
}

func TestKeysFromEnvironment(t *testing.T) {
	t.Setenv("HS_TEST_API_KEY", "sk-from-env")
	c := mustParse(t, minimal+"api_keys: [\"${env:HS_TEST_API_KEY}\", literal]\n")
	if want := []string{"sk-from-env", "literal"}; !reflect.DeepEqual(c.APIKeys, want) {
		t.Errorf("api_keys = %q, want %q", c.APIKeys, want)
	}
	got := problems(t, minimal+"admin_keys: [\"${env:HS_TEST_UNSET_KEY}\", \" padded\"]\n")
	want := []string{"admin_keys[0]: the environment variable HS_TEST_UNSET_KEY is not set",
		"admin_keys[1]: must not start or end with a space nor hold control characters"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
}
