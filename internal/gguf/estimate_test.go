package gguf

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadHeaderTensorBytes(t *testing.T) {
	for _, f16 := range []bool{false, true} {
		o := Options{F16: f16, HeadCountKV: 2}
		path, _ := writeModel(t, o)
		h, err := ReadHeader(path)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, tn := range h.Tensors {
			b, err := tn.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			n += b
		}
		if n != o.WeightBytes() {
			t.Errorf("F16 %v: tensor bytes %d, want %d", f16, n, o.WeightBytes())
		}
		if h.Meta["general.architecture"] != "llama" || h.Meta["llama.block_count"] != uint64(2) ||
			h.ArrayLen["tokenizer.ggml.tokens"] != uint64(VocabSize) {
			t.Errorf("metadata: %v, tokens %d", h.Meta, h.ArrayLen["tokenizer.ggml.tokens"])
		}
	}
}

func TestEstimateKVCache(t *testing.T) {
	o := Options{HeadCountKV: 2} // E 128, 4 heads: head size 32, K and V rows 64 wide
	path, _ := writeModel(t, o)
	q8, _ := CacheType("q8_0")
	for _, c := range []struct {
		name string
		p    Params
		ctx  int64
		kv   int64
	}{
		{"c 300 (padded to 512), f16", Params{Ctx: 300, CacheK: F16, CacheV: F16}, 512, 512 * 2 * (128 + 128)},
		{"train ctx 2048", Params{CacheK: F16, CacheV: F16}, 2048, 2048 * 2 * 256},
		{"q8_0 K, f16 V", Params{Ctx: 512, CacheK: q8, CacheV: F16}, 512, 512 * 2 * (2*34 + 128)},
		{"4 slots share the context", Params{Ctx: 1024, Parallel: 4, CacheK: F16, CacheV: F16}, 1024, 1024 * 2 * 256},
		{"3 slots: each padded", Params{Ctx: 1024, Parallel: 3, CacheK: F16, CacheV: F16}, 3 * 512, 3 * 512 * 2 * 256},
		{"3 slots, unified", Params{Ctx: 1024, Parallel: 3, KVUnified: true, CacheK: F16, CacheV: F16}, 1024, 1024 * 2 * 256},
	} {
		c.p.GPULayers = -1
		e, err := EstimateFiles([]string{path}, c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		// FF 512 (4·E), E 128; a micro-batch of 512 tokens.
		compute := int64(ComputeBase + 4*ComputeUbatch*(VocabSize+3*512+4*128))
		if e.Ctx != c.ctx || e.KV != c.kv || e.Weights != o.WeightBytes() || e.Compute != compute {
			t.Errorf("%s: %+v, want ctx %d, kv %d, weights %d, compute %d", c.name, e, c.ctx, c.kv, o.WeightBytes(), compute)
		}
		embd := int64(VocabSize * 128 * 4)
		if e.RAM != embd || e.VRAM != e.Weights-embd+e.KV+e.Compute {
			t.Errorf("%s: all on the GPU but token_embd: RAM %d VRAM %d", c.name, e.RAM, e.VRAM)
		}
	}
	e, err := EstimateFiles([]string{path}, Params{Ctx: 256, CacheK: F16, CacheV: F16, GPULayers: 0})
	if err != nil || e.VRAM != 0 || e.RAM != e.Weights+e.KV+e.Compute {
		t.Errorf("-ngl 0: %+v %v", e, err)
	}
	// -ngl 1 of 2 layers: blk.1's weights and KV cache on the GPU.
	e, err = EstimateFiles([]string{path}, Params{Ctx: 256, CacheK: F16, CacheV: F16, GPULayers: 1})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ReadHeader(path)
	var blk1 int64
	for _, tn := range h.Tensors {
		if len(tn.Name) > 6 && tn.Name[:6] == "blk.1." {
			b, _ := tn.Bytes()
			blk1 += b
		}
	}
	if e.VRAM != blk1+e.KV/2+e.Compute || e.RAM+e.VRAM != e.Weights+e.KV+e.Compute {
		t.Errorf("-ngl 1: %+v, blk.1 %d", e, blk1)
	}
}

// TestEstimateCompute: the compute allowance is for one micro-batch: -ub
// (512), at most -b and the context, as llama.cpp caps it.
func TestEstimateCompute(t *testing.T) {
	o := Options{FeedForwardLength: 1000}
	path, _ := writeModel(t, o)
	perToken := int64(4 * (VocabSize + 3*1000 + 4*128))
	for _, c := range []struct {
		name   string
		p      Params
		ubatch int64
	}{
		{"defaults", Params{Ctx: 4096}, 512},
		{"context smaller than a micro-batch", Params{Ctx: 256}, 256},
		{"-ub 128", Params{Ctx: 4096, Ubatch: 128}, 128},
		{"-ub 1024", Params{Ctx: 4096, Ubatch: 1024}, 1024},
		{"-b 64", Params{Ctx: 4096, Batch: 64}, 64},
		{"-ub 2048, -c 1000 (padded to 1024)", Params{Ctx: 1000, Ubatch: 2048}, 1024},
	} {
		c.p.CacheK, c.p.CacheV = F16, F16
		e, err := EstimateFiles([]string{path}, c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if want := ComputeBase + c.ubatch*perToken; e.Compute != want {
			t.Errorf("%s: compute %d, want %d (a micro-batch of %d)", c.name, e.Compute, want, c.ubatch)
		}
	}
}

func TestEstimateSplitFiles(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.gguf")
	o := Options{F16: true}
	if err := WriteTinyLlama(one, o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(one)
	var parts []string
	for _, n := range []string{"m-00001-of-00002.gguf", "m-00002-of-00002.gguf"} {
		parts = append(parts, filepath.Join(dir, n))
		if err := os.WriteFile(parts[len(parts)-1], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e, err := EstimateFiles(parts, DefaultParams)
	if err != nil || e.Weights != 2*o.WeightBytes() {
		t.Fatalf("split: %+v %v, want weights %d", e, err, 2*o.WeightBytes())
	}
	if _, err := EstimateFiles(append(parts, filepath.Join(dir, "m-00003-of-00002.gguf")), DefaultParams); err == nil {
		t.Error("a missing part gave an estimate")
	}
}

// TestBadFiles: a missing, garbage or cut-short file is an error, never a
// panic or a huge allocation.
func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadHeader(filepath.Join(dir, "missing.gguf")); err == nil {
		t.Error("missing file: no error")
	}
	path, _ := writeModel(t, Options{})
	good, _ := os.ReadFile(path)
	h, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = h
	bad := filepath.Join(dir, "bad.gguf")
	try := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(bad, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := EstimateFiles([]string{bad}, DefaultParams); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	try("empty", nil)
	try("text", []byte("not a model at all, just text\n"))
	// Every cut of the header (the data section starts after it; header
	// size: the first tensor's data is at the file's end less the weights).
	hdr := len(good) - int(Options{}.WeightBytes()) - 2*Alignment*len(h.Tensors)
	for n := 0; n < hdr; n += 97 {
		try("cut", good[:n])
	}
	// Huge counts and lengths.
	huge := append([]byte(nil), good...)
	for _, off := range []int{8, 16, 24} { // tensor count, KV count, first key's length
		c := append([]byte(nil), huge...)
		for i := 0; i < 8; i++ {
			c[off+i] = 0xff
		}
		try("huge count", c)
	}
	// A garbage value type for the first KV pair.
	c := append([]byte(nil), good...)
	klen := int(c[24])
	c[32+klen] = 0x7f
	try("value type", c)
}
