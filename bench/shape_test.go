package bench

import (
	"strings"
	"testing"

	"github.com/hotswap/hotswap/probe"
)

// shapeConfig has one model whose requests pass as they are and one whose
// every request is shaped (params of each kind, nested keys) and sent
// upstream under another name, with its answers renamed back. Both mocks
// check the model name, so that they do the same work.
const shapeConfig = `
ports: 23000-23999
models:
  plain:
    cmd: MOCK -port ${PORT} -model plain -served-model-name plain -tokens 3 -stream-interval 1ms -progress-interval 0
    parallel: 64
  shaped:
    cmd: MOCK -port ${PORT} -model shaped -served-model-name served -tokens 3 -stream-interval 1ms -progress-interval 0
    parallel: 64
    upstream_model: served
    params:
      set: {temperature: 0.6, chat_template_kwargs.enable_thinking: false}
      default: {top_p: 0.95, top_k: 20}
      strip: [logit_bias, chat_template_kwargs.foo]
`

// BenchmarkShapedPathAllocs is BenchmarkHotPathAllocs for a request that
// is shaped and renamed, beside one that is not, on the same hotswap: what
// the shaping and renaming add to a warm request, in time and allocations,
// for a small chat and for one of about 100 KB. Streamed answers are
// renamed event by event.
func BenchmarkShapedPathAllocs(b *testing.B) {
	hs := serve(b, shapeConfig, probe.NewFake(mockExe, 10<<30), false)
	warm(b, hs.url, "plain")
	warm(b, hs.url, "shaped")
	var msgs []string
	for len(strings.Join(msgs, ",")) < 100<<10 {
		msgs = append(msgs, `{"role":"user","content":"`+strings.Repeat("lorem ipsum dolor sit amet ", 40)+`"}`)
	}
	large := strings.Join(msgs, ",")
	for _, c := range []struct{ name, model, extra, messages string }{
		{"plain", "plain", "", `{"role":"user","content":"hi"}`},
		{"shaped", "shaped", "", `{"role":"user","content":"hi"}`},
		{"plain-100KB", "plain", "", large},
		{"shaped-100KB", "shaped", "", large},
		{"plain-stream", "plain", `"stream":true,`, `{"role":"user","content":"hi"}`},
		{"shaped-stream", "shaped", `"stream":true,`, `{"role":"user","content":"hi"}`},
	} {
		body := []byte(`{"model":"` + c.model + `",` + c.extra + `"max_tokens":1,"temperature":1,"logit_bias":{"50256":-100},"messages":[` + c.messages + `]}`)
		b.Run(c.name, func(b *testing.B) { postLoop(b, hs.url, body) })
	}
}
