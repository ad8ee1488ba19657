package swapper_test

import (
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hotswap/hotswap/internal/gguf"
	"github.com/hotswap/hotswap/swapper"
)

// TestEstimateFromModelFile: a model that declares no memory and has
// none learned is planned as its GGUF file's estimate, so starting it
// evicts a model where planning it as needing nothing would not. The mock
// ignores the file; its path is the value of a flag the mock accepts.
func TestEstimateFromModelFile(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "long.gguf")
	// A tiny model with a 4Mi-token training context: its KV cache
	// (llama-server's default -c 0) is 4Mi × 2 layers × 2 × 128 × 2 bytes
	// = 4GiB.
	o := gguf.Options{ContextLength: 4 << 20}
	if err := gguf.WriteTinyLlama(model, o); err != nil {
		t.Fatal(err)
	}
	want, err := gguf.EstimateFiles([]string{model}, gguf.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if want.KV != 4*gib {
		t.Fatalf("KV cache %d, want 4GiB", want.KV)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	sw, _ := memSwapper(t, fiveModels+`
  e: {cmd: "MOCK -port ${PORT} -model e -fail-message `+model+`"}
  gone: {cmd: "MOCK -port ${PORT} -model gone -fail-message `+filepath.Join(dir, "missing.gguf")+`"}
`, fakeFor(t, 10*gib), func(o *swapper.Options) { o.Log = zap.New(core) })

	st, _ := sw.Status("e")
	if st.Need.RAM+st.Need.VRAM != want.RAM+want.VRAM || st.Need.RAM+st.Need.VRAM < 4*gib {
		t.Errorf("e's need %+v, want the estimate %+v", st.Need, want)
	}
	if n := logs.FilterMessage("estimated footprint from the model file").Len(); n != 1 {
		t.Errorf("%d estimates logged", n)
	}
	if st, _ := sw.Status("gone"); st.Need.RAM != 0 || st.Need.VRAM != 0 {
		t.Errorf("a missing file gave a need: %+v", st.Need)
	}
	if logs.FilterMessage("no footprint estimate from the model file").FilterField(zap.String("model", "gone")).Len() != 1 {
		t.Error("the missing file was not logged")
	}

	use(t, sw, "a")
	use(t, sw, "b")
	// 4GiB free: e's 4GiB and more needs a's 3GiB too.
	use(t, sw, "e")
	if got := states(sw, "a", "b", "e"); got != "a=stopped b=ready e=ready" {
		t.Errorf("after e: %s", got)
	}
}
