package proxy_test

import (
	"strings"
	"testing"
)

// splitConfig has a backend that writes each answer's headers and body in
// two writes without TCP_NODELAY, as Python's http.server and Flask's
// development server do, and the same mock without that habit.
const splitConfig = `
ports: 28100-28199
health_timeout: 10s
stop_timeout: 2s
models:
  split:
    cmd: MOCK -port ${PORT} -model ${MODEL} -split-writes -stream-interval 1ms -tokens 4 -progress-interval 0
    parallel: 4
  plain:
    cmd: MOCK -port ${PORT} -model ${MODEL} -stream-interval 1ms -tokens 4 -progress-interval 0
    parallel: 4
`

// TestSplitWritesBackendOnKeptConnections: requests through hotswap to a
// backend that writes headers and body apart without TCP_NODELAY are
// answered whole, chats and streams, one after another on the one
// connection hotswap keeps to it; a backend without the habit keeps its
// connection reused as before.
func TestSplitWritesBackendOnKeptConnections(t *testing.T) {
	s := newStack(t, splitConfig)
	const chats = 10
	for _, model := range []string{"split", "plain"} {
		for i := range chats {
			r := s.chat(model, "hello")
			if r.status != 200 || !strings.Contains(string(r.body), `"chat.completion"`) {
				t.Fatalf("%s: chat %d: %d %s", model, i, r.status, r.body)
			}
		}
		resp, events, err := s.stream(model, nil)
		if err != nil || resp.StatusCode != 200 || len(events) < 4 || events[len(events)-1].data != "[DONE]" {
			t.Fatalf("%s: stream %v, %d events, %v", model, resp.Status, len(events), err)
		}
		st := s.backendStats(model)
		if st.Requests != chats+1 {
			t.Errorf("%s: the backend got %d requests, want %d", model, st.Requests, chats+1)
		}
		if st.ModelConns != 1 {
			t.Errorf("%s: %d connections for %d requests in a row, want 1", model, st.ModelConns, chats+1)
		}
	}
}
