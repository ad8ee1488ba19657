package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hotswap/hotswap/metrics"
)

// TestVariants: requests for variants are counted by model and variant,
// each declared pair from zero; the variant label takes the declared
// values only, and a reload deletes the series of variants that left.
func TestVariants(t *testing.T) {
	m := metrics.New([]string{"qwen", "llama"}, nil, nil)
	m.SetVariants(map[string][]string{"qwen": {"qwen-fast", "qwen-think"}})
	m.Variant("qwen", "qwen-fast")
	m.Variant("qwen", "qwen-fast")
	m.Variant("qwen", "made-up")    // not declared
	m.Variant("llama", "qwen-fast") // not its model's
	f := scrape(t, m)
	const name = "hotswap_variant_requests_total"
	for _, c := range []struct {
		model, variant string
		want           float64
	}{{"qwen", "qwen-fast", 2}, {"qwen", "qwen-think", 0}, {"other", "other", 2}} {
		if got := value(t, f, name, "model", c.model, "variant", c.variant); got != c.want {
			t.Errorf("%s{%s,%s} = %v, want %v", name, c.model, c.variant, got, c.want)
		}
	}
	if got := len(f[name].GetMetric()); got != 3 {
		t.Errorf("%d series, want 3", got)
	}

	// A reload: qwen-think leaves, llama gains one; qwen-fast keeps
	// counting. A model that leaves takes its variants' series along.
	m.SetVariants(map[string][]string{"qwen": {"qwen-fast"}, "llama": {"llama-code"}})
	m.Variant("qwen", "qwen-fast")
	f = scrape(t, m)
	if got := value(t, f, name, "model", "qwen", "variant", "qwen-fast"); got != 3 {
		t.Errorf("qwen-fast after the reload: %v", got)
	}
	if find(f, name, "model", "qwen", "variant", "qwen-think") != nil {
		t.Error("qwen-think's series outlived its variant")
	}
	m.SetModels([]string{"qwen"})
	f = scrape(t, m)
	if find(f, name, "model", "llama", "variant", "llama-code") != nil {
		t.Error("llama's variants outlived it")
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// Metrics count variants for the proxy.
var _ interface {
	SetVariants(map[string][]string)
	Variant(model, variant string)
} = (*metrics.Metrics)(nil)
