package swapper

import (
	"slices"
	"testing"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/gguf"
)

// TestModelFilesArgs: the file and the llama-server settings an estimate
// depends on are read from the command line, in either form of each flag.
func TestModelFilesArgs(t *testing.T) {
	q8, _ := gguf.CacheType("q8_0")
	for _, c := range []struct {
		cmd  []string
		file string
		want gguf.Params
	}{
		{[]string{"llama-server", "-m", "/m/a.gguf", "--port", "${PORT}"}, "/m/a.gguf", gguf.DefaultParams},
		{[]string{"llama-server", "--model=/m/a.gguf", "-c", "8192", "-np", "4", "-b", "1024", "-ub", "256", "-ngl", "0"}, "/m/a.gguf",
			gguf.Params{Ctx: 8192, Parallel: 4, Batch: 1024, Ubatch: 256, CacheK: gguf.F16, CacheV: gguf.F16, GPULayers: 0}},
		{[]string{"llama-server", "/m/b.gguf", "--ctx-size=2048", "--parallel=2", "--batch-size", "512", "--ubatch-size=128", "-ctk", "q8_0", "-kvu"}, "/m/b.gguf",
			gguf.Params{Ctx: 2048, Parallel: 2, Batch: 512, Ubatch: 128, KVUnified: true, CacheK: q8, CacheV: gguf.F16, GPULayers: -1}},
	} {
		paths, p, ok := modelFiles(&config.Model{ID: "m", Cmd: c.cmd})
		if !ok || !slices.Equal(paths, []string{c.file}) || p != c.want {
			t.Errorf("%q: %v %+v %v, want %s %+v", c.cmd, paths, p, ok, c.file, c.want)
		}
	}
}
