package ui_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// Another site, in a real browser, against a hotswap with no keys (the
// bundled configuration): what a page the user happens to visit can make
// the browser send to 127.0.0.1 without asking (a form, fetch in no-cors
// mode, a beacon, an image), and the same page reaching hotswap through a
// name it rebound to 127.0.0.1. None of it may steer hotswap; hotswap's own
// page goes on working.

const openScenario = `
ports: 29500-29999
stop_timeout: 5s
models:
  alpha: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  beta: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  gamma: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
modes:
  solo: [beta]
`

// attackPage is the other site's page; HS stands for hotswap's URL. Each
// of its five requests is one a browser sends without a preflight.
const attackPage = `<!doctype html><title>a page elsewhere</title>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" action="HS/admin/unload" enctype="text/plain" target="sink"><input name="x" value="y"></form>
<img src="HS/upstream/beta/health">
<script>
(async () => {
  document.getElementById("f").submit();
  const simple = {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}};
  await fetch("HS/admin/modes/solo", simple).catch(() => {});
  await fetch("HS/v1/chat/completions", {...simple,
    body: JSON.stringify({model: "beta", messages: [{role: "user", content: "hi"}]})}).catch(() => {});
  navigator.sendBeacon("HS/admin/models/gamma/load", "x");
  document.title = "sent";
})();
</script>`

func TestAnotherSiteCannotSteerHotswap(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, openScenario)
	if h.chat("alpha") != 200 {
		t.Fatal("alpha did not start")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	attacker := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(strings.ReplaceAll(attackPage, "HS", h.url)))
	})}
	go attacker.Serve(ln)
	t.Cleanup(func() { attacker.Close() })
	_, attackerPort, _ := net.SplitHostPort(ln.Addr().String())
	_, hotswapPort, _ := net.SplitHostPort(h.addr)

	// attacker.test is the other site's name; it resolves to this machine,
	// as a rebinding name would.
	p := newPage(t, 1024, 800, chromedp.Flag("host-resolver-rules", "MAP attacker.test 127.0.0.1"))
	p.do(chromedp.Navigate("http://attacker.test:" + attackerPort + "/"))
	p.waitFor("the page's requests to be sent", `document.title === "sent"`, 15*time.Second)
	refused := func() int { return strings.Count(h.log(), `"status": 403`) }
	if !mocktest.Eventually(15*time.Second, func() bool { return refused() >= 5 }) {
		t.Fatalf("%d of the page's 5 requests were refused; the log:\n%s", refused(), h.log())
	}
	var running []struct{ Model, State string }
	h.get("/admin/running", "", &running)
	if len(running) != 1 || running[0].Model != "alpha" || running[0].State != "ready" {
		t.Errorf("after the other site's page: %+v", running)
	}

	// Rebinding: the same name, now on hotswap's port. The browser takes
	// the page to be attacker.test's; the Host says so, and is refused.
	p.do(chromedp.Navigate("http://attacker.test:" + hotswapPort + "/ui/"))
	p.waitFor("the refusal", `document.body.innerText.includes("host_not_allowed")`, 10*time.Second)
	h.get("/admin/running", "", &running)
	if len(running) != 1 {
		t.Errorf("after the rebound page: %+v", running)
	}

	// hotswap's own page, from hotswap's own origin, still steers it.
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("the page", `document.body.dataset.loaded === "true"`, 15*time.Second)
	p.waitFor("beta's row", `!!document.querySelector('#models tr[data-model="beta"] button.load')`, 10*time.Second)
	p.do(chromedp.Click(chromedp.CSS(`#models tr[data-model="beta"] button.load`)))
	p.waitFor("beta loaded from the page", state("beta")+` === "ready"`, 20*time.Second)
}
