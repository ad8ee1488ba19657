package main

import (
	"strings"
	"testing"
)

// TestSplitWritesBackend: a backend with Python's http.server's habit
// (headers and body in two writes, Nagle on; the mock's -split-writes) is
// started, found ready and served through the binary, chats and a stream,
// on kept connections. How long it takes is BenchmarkSplitWrites*'s
// business (BENCHMARKS.md); this is that nothing is lost or cut.
func TestSplitWritesBackend(t *testing.T) {
	b := build(t)
	_, base := start(t, b, writeConfig(t, b, `
ports: 22000-22999
models:
  py: {cmd: "MOCK -port ${PORT} -model ${MODEL} -split-writes -startup 200ms -progress-interval 0"}
`))
	c := client{t, base, ""}
	pid := c.chat("py")
	for range 20 {
		if got := c.chat("py"); got != pid {
			t.Fatalf("answered by %d, then %d", pid, got)
		}
	}
	code, body, _ := c.do("POST", "/v1/chat/completions", `{"model":"py","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 || !strings.Contains(string(body), "data: [DONE]") || strings.Count(string(body), "data: ") < 3 {
		t.Errorf("stream: %d %s", code, body)
	}
	var st struct {
		Requests   int `json:"requests"`
		ModelConns int `json:"model_connections"`
	}
	c.json("GET", "/upstream/py/mock/stats", "", 200, &st)
	// 22 model requests (and this one, which the stats do not count as
	// one), on connections hotswap kept: far fewer than requests.
	if st.Requests < 22 || st.ModelConns > 3 {
		t.Errorf("the backend saw %d requests on %d connections", st.Requests, st.ModelConns)
	}
}
