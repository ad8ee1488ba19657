package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestAdminUnknownModel: every /admin/models/{model}/... route answers a
// model hotswap does not know with the 404 a waiting load gets, whatever
// the query says; none accepts it for later.
func TestAdminUnknownModel(t *testing.T) {
	b := build(t)
	_, url, logs := startLogged(t, b, writeConfig(t, b, adminConfig))
	admin := client{t, url, "admin-key"}

	code, want, _ := admin.do("POST", "/admin/models/does-not-exist/load", "")
	if code != 404 || errCode(want) != "model_not_found" {
		t.Fatalf("load of an unknown model: %d %s", code, want)
	}
	for _, path := range []string{
		"/admin/models/does-not-exist/load?wait=false",
		"/admin/models/does-not-exist/load?wait=0",
		"/admin/models/does-not-exist/load?wait=true",
		"/admin/models/does-not-exist/unload",
		"/admin/models/does-not-exist/unload?force=true",
	} {
		code, body, _ := admin.do("POST", path, "")
		if code != 404 || errCode(body) != "model_not_found" || !strings.Contains(string(body), "does-not-exist") {
			t.Errorf("POST %s: %d %s", path, code, body)
		}
		if strings.Contains(path, "/load") && string(body) != string(want) {
			t.Errorf("POST %s answers %s, unlike a waiting load: %s", path, body, want)
		}
	}
	// An alias is known, and loads in the background.
	if code, body, _ := admin.do("POST", "/admin/models/alpha/load?wait=false", ""); code != 202 ||
		!strings.Contains(string(body), `"loading"`) {
		t.Errorf("load of an alias, not waited for: %d %s", code, body)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return admin.running()["a"].State == "ready" }) {
		t.Errorf("a after a load not waited for: %+v", admin.running()["a"])
	}
	// Nothing was started in the background for the unknown model.
	if strings.Contains(logs.String(), "load failed") {
		t.Errorf("a load was tried in the background:\n%s", logs.String())
	}
}
