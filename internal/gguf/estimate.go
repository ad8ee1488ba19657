package gguf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Params are the llama-server settings an estimate depends on.
type Params struct {
	// Ctx is -c/--ctx-size; 0 is the model's training context
	// (<arch>.context_length), as llama-server does (common.h: n_ctx 0 ==
	// "context the model was trained with"; llama-context.cpp).
	Ctx int64
	// Parallel is -np/--parallel; 0 or less is llama-server's auto: 4 slots
	// sharing one unified KV cache (tools/server/server.cpp).
	Parallel int64
	// KVUnified is -kvu: one KV buffer for all slots.
	KVUnified bool
	// CacheK and CacheV are -ctk and -ctv (default F16).
	CacheK, CacheV TensorType
	// GPULayers is -ngl: 0 keeps everything in RAM; negative (absent,
	// "auto", "all") or at least the layer count + 1 puts all of it in
	// VRAM; between, that many of the last layers go to VRAM.
	GPULayers int64
	// Batch and Ubatch are -b and -ub; 0 is llama-server's default (2048
	// and 512).
	Batch, Ubatch int64
}

// DefaultParams are llama-server's defaults.
var DefaultParams = Params{CacheK: F16, CacheV: F16, GPULayers: -1}

// ComputeBase and the per-token term make the compute-buffer allowance:
// ComputeBase + 4 bytes × ubatch × (n_vocab + 3·n_ff + 4·n_embd), where
// ubatch is the micro-batch, -ub (ComputeUbatch), at most -b and the
// context (llama-context.cpp caps it so). The per-token term is llama.cpp's
// compute buffer (the f32 activations of one micro-batch at their peak:
// the logits, the feed-forward network's gate, up and their product, and
// a few rows of the model's width), which it allocates at start and fills
// when a prompt fills a micro-batch; ComputeBase stands for the program
// and its libraries (about 16 MiB of mapped code on x86-64) and its heap.
// Against llama-server's own "compute buffer size" it is within a few MiB
// for internal/gguf's models (widths 128 to 2048, feed-forward widths 512
// to 21500); it gives about 175 MiB for a 7B llama, and 21 MiB for
// internal/gguf's default shape.
const (
	ComputeBase   = 16 << 20
	ComputeUbatch = 512
	ComputeBatch  = 2048
)

// Estimate is a model's planned footprint from its file.
type Estimate struct {
	Weights, KV, Compute int64 // bytes, all devices
	Ctx                  int64 // KV cells: the context, as padded
	RAM, VRAM            int64
}

// EstimateFiles computes the footprint of the model in paths (one file, or all
// the parts of a split model) under p.
func EstimateFiles(paths []string, p Params) (Estimate, error) {
	if len(paths) == 0 {
		return Estimate{}, errors.New("gguf: no model file")
	}
	var hs []*Header
	for _, path := range paths {
		h, err := ReadHeader(path)
		if err != nil {
			return Estimate{}, err
		}
		hs = append(hs, h)
	}
	return EstimateHeaders(hs, p)
}

// EstimateHeaders is EstimateFiles on headers already read; the metadata
// is the first's (split files carry it in the first part).
func EstimateHeaders(hs []*Header, p Params) (Estimate, error) {
	h := hs[0]
	arch, _ := h.Meta["general.architecture"].(string)
	if arch == "" {
		return Estimate{}, errors.New("gguf: no general.architecture")
	}
	u := func(key string) int64 {
		switch v := h.Meta[arch+"."+key].(type) {
		case uint64:
			return int64(min(v, 1<<40))
		case int64:
			return max(0, min(v, 1<<40))
		}
		return 0
	}
	layers, embd, heads := u("block_count"), u("embedding_length"), u("attention.head_count")
	if layers <= 0 || embd <= 0 {
		return Estimate{}, fmt.Errorf("gguf: %s: no %s.block_count or %s.embedding_length", arch, arch, arch)
	}
	// Per-layer head counts, where they are arrays (llama-model.cpp
	// reads them with get_key_or_arr).
	perLayer := func(key string, def int64) []int64 {
		out := make([]int64, layers)
		vs := h.Ints[arch+"."+key]
		n := u(key)
		for i := range out {
			switch {
			case len(vs) == int(layers):
				out[i] = vs[i]
			case n > 0:
				out[i] = n
			default:
				out[i] = def
			}
		}
		return out
	}
	hc := perLayer("attention.head_count", 0)
	hkv := perLayer("attention.head_count_kv", -1)
	var e Estimate
	gpu := func(layer int64) bool { // layer -1: the non-repeating tensors
		switch {
		case p.GPULayers == 0:
			return false
		case p.GPULayers < 0 || p.GPULayers > layers:
			return true
		case layer < 0:
			return false
		}
		return layer >= layers-p.GPULayers
	}
	for _, hh := range hs {
		for _, t := range hh.Tensors {
			b, err := t.Bytes()
			if err != nil {
				return Estimate{}, fmt.Errorf("gguf: %w", err)
			}
			e.Weights += b
			layer := int64(-1)
			if rest, ok := strings.CutPrefix(t.Name, "blk."); ok {
				if n, _, ok := strings.Cut(rest, "."); ok {
					layer, _ = strconv.ParseInt(n, 10, 64)
				}
			}
			// llama.cpp keeps the input embeddings (token_embd) on the CPU
			// (llama-model.cpp assigns the input layer to the CPU).
			if t.Name != "token_embd.weight" && gpu(layer) {
				e.VRAM += b
			} else {
				e.RAM += b
			}
		}
	}
	// KV cache: cells × layers × (K row + V row); the cells are the whole
	// context, shared by the slots (llama-context.cpp: n_ctx padded to
	// 256; without a unified cache each slot has n_ctx/n_seq, padded).
	ctx := p.Ctx
	if ctx <= 0 {
		ctx = u("context_length")
	}
	if ctx <= 0 {
		return Estimate{}, fmt.Errorf("gguf: %s: no %s.context_length", arch, arch)
	}
	ctx = pad256(ctx)
	if p.Parallel > 0 && !p.KVUnified {
		ctx = p.Parallel * pad256(ctx/p.Parallel)
	}
	e.Ctx = ctx
	for i := int64(0); i < layers; i++ {
		if hc[i] <= 0 {
			continue
		}
		kvHeads := hkv[i]
		if kvHeads < 0 {
			kvHeads = hc[i]
		}
		kLen, vLen := u("attention.key_length"), u("attention.value_length")
		if kLen == 0 {
			kLen = embd / hc[i]
		}
		if vLen == 0 {
			vLen = embd / hc[i]
		}
		kRow, err := p.CacheK.RowBytes(uint64(kLen * kvHeads))
		if err != nil {
			return Estimate{}, fmt.Errorf("gguf: K cache: %w", err)
		}
		vRow, err := p.CacheV.RowBytes(uint64(vLen * kvHeads))
		if err != nil {
			return Estimate{}, fmt.Errorf("gguf: V cache: %w", err)
		}
		b := ctx * int64(kRow+vRow)
		e.KV += b
		if gpu(i) {
			e.VRAM += b
		} else {
			e.RAM += b
		}
	}
	if heads <= 0 && e.KV == 0 {
		return Estimate{}, fmt.Errorf("gguf: %s: no %s.attention.head_count", arch, arch)
	}
	vocab := u("vocab_size")
	if vocab == 0 {
		vocab = int64(h.ArrayLen["tokenizer.ggml.tokens"])
	}
	ubatch, batch := p.Ubatch, p.Batch
	if ubatch <= 0 {
		ubatch = ComputeUbatch
	}
	if batch <= 0 {
		batch = ComputeBatch
	}
	ubatch = min(ubatch, batch, ctx)
	e.Compute = ComputeBase + 4*ubatch*(vocab+3*u("feed_forward_length")+4*embd)
	if gpu(layers - 1) {
		e.VRAM += e.Compute
	} else {
		e.RAM += e.Compute
	}
	return e, nil
}

func pad256(n int64) int64 { return (n + 255) / 256 * 256 }

// CacheType is the ggml type of a -ctk/-ctv value (common/arg.cpp's
// kv_cache_types).
func CacheType(s string) (TensorType, bool) {
	t, ok := map[string]TensorType{
		"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3,
		"iq4_nl": 20, "q5_0": 6, "q5_1": 7,
	}[strings.ToLower(s)]
	return t, ok
}
