package ui_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestForgetFromThePage: a model measured to use more than it declares is
// planned with the measurement; Forget on its row drops what was learned,
// and it is planned with its declaration again.
func TestForgetFromThePage(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, `
ports: 29500-29999
models:
  big: {cmd: "MOCK -port ${PORT} -model ${MODEL} -hold 48MiB", memory: {ram: 8MiB}}
`)
	needRAM := func() int64 {
		var models []struct {
			Model   string `json:"model"`
			NeedRAM int64  `json:"need_ram"`
		}
		h.get("/admin/models", "", &models)
		return models[0].NeedRAM
	}
	if h.chat("big") != 200 {
		t.Fatal("big did not start")
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return needRAM() > 40<<20 }) {
		t.Fatalf("big is planned with %d bytes after a measurement of 48MiB", needRAM())
	}
	if h.call("POST", "/admin/models/big/unload", "", "") != 200 {
		t.Fatal("unload")
	}
	p := newPage(t, 1280, 800)
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("big's row", `!!document.querySelector('#models tr[data-model="big"] button.forget')`, 15*time.Second)
	p.do(chromedp.Click(chromedp.CSS(`#models tr[data-model="big"] button.forget`)))
	if !mocktest.Eventually(10*time.Second, func() bool { return needRAM() == 8<<20 }) {
		t.Errorf("after Forget, big is planned with %d bytes, want its declared 8MiB", needRAM())
	}
}
