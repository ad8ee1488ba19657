package ui_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestSleepOnThePage: a model put to sleep to make room is shown asleep,
// with what it keeps, and Activity says it was put to sleep, then woken.
func TestSleepOnThePage(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, `
ports: 29500-29999
memory: {limit_ram: 400MiB}
models:
  alpha:
    cmd: "MOCK -port ${PORT} -model ${MODEL} -hold 200MiB -sleep-mode -wake-time 50ms -progress-interval 0"
    memory: {ram: 220MiB}
    sleep: {preset: vllm, memory: {ram: 48MiB}}
  beta:
    cmd: "MOCK -port ${PORT} -model ${MODEL} -hold 200MiB -sleep-mode -wake-time 50ms -progress-interval 0"
    memory: {ram: 220MiB}
    sleep: {preset: vllm, memory: {ram: 48MiB}}
`)
	chat := func(model string) {
		t.Helper()
		if code := h.call("POST", "/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`, ""); code != 200 {
			t.Fatalf("chat %s: %d", model, code)
		}
	}
	p := newPage(t, 1280, 800)
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("the models table", `!!document.querySelector('#models tr[data-model="alpha"]')`, 15*time.Second)
	chat("alpha")
	chat("beta")
	row := `#models tr[data-model="alpha"]`
	p.waitFor("alpha asleep, keeping 48MiB", `(document.querySelector('`+row+` .state')||{}).textContent === 'asleep' && `+
		`document.querySelector('`+row+` .why').textContent.includes('keeps 48.0 MiB asleep')`, 15*time.Second)
	p.waitFor("alpha put to sleep in Activity", `[...document.querySelectorAll('#activity li[data-type="evict"][data-model="alpha"]')]`+
		`.some(li => li.textContent.includes("put to sleep: making room for beta"))`, 10*time.Second)
	p.waitFor("beta's start puts alpha to sleep", `[...document.querySelectorAll('#activity li[data-type="start"][data-model="beta"]')]`+
		`.some(li => li.textContent.includes("putting alpha to sleep") && !li.textContent.includes("evicting"))`, 10*time.Second)
	chat("alpha")
	p.waitFor("alpha woken in Activity", `[...document.querySelectorAll('#activity li[data-type="ready"][data-model="alpha"]')]`+
		`.some(li => li.textContent.startsWith("awake after") || li.textContent.includes("awake after"))`, 10*time.Second)
	p.waitFor("alpha's wake decided", `[...document.querySelectorAll('#activity li[data-type="start"][data-model="alpha"]')]`+
		`.some(li => li.textContent.includes("waking"))`, 10*time.Second)
	p.waitFor("beta asleep now", `(document.querySelector('#models tr[data-model="beta"] .state')||{}).textContent === 'asleep'`, 15*time.Second)
}
