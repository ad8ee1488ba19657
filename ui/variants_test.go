package ui_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestVariantsOnThePage: a model's row names the variants its backend
// serves, and the filter finds the model by a variant's name or alias.
func TestVariantsOnThePage(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, `
ports: 29500-29999
models:
  qwen:
    cmd: "MOCK -port ${PORT} -model ${MODEL}"
    variants:
      qwen-fast: {aliases: [quick]}
      qwen-think:
  other: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`)
	p := newPage(t, 1280, 800)
	p.do(chromedp.Navigate(h.url + "/ui/"))
	row := `#models tr[data-model="qwen"]`
	p.waitFor("qwen's variants", `(document.querySelector('`+row+` .variants')||{}).textContent === 'also qwen-fast, qwen-think'`, 15*time.Second)
	if got := eval[string](p, `document.querySelector('#models tr[data-model="other"] .variants').textContent`); got != "" {
		t.Errorf("other, without variants, says %q", got)
	}
	p.do(chromedp.SendKeys(`#model-filter`, "quick"))
	p.waitFor("the filter to find qwen by its variant's alias",
		`!document.querySelector('`+row+`').hidden && document.querySelector('#models tr[data-model="other"]').hidden`, 5*time.Second)
}
