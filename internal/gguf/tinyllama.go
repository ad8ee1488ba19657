package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
)

// Options shape a tiny llama model. The zero value is usable: every zero
// field takes the default in brackets.
//
// Size: the weights take WeightBytes bytes, which is about
//
//	Layers × (2·E² + 2·E·E_kv + 3·E·FF) × elem   (attention and FFN matrices)
//	+ 2 × VocabSize × E × elem                     (token_embd and output)
//
// with E = EmbeddingLength, E_kv = E·HeadCountKV/HeadCount, FF =
// FeedForwardLength and elem 4 bytes (F32) or 2 (F16); the norm vectors
// add (2·Layers+1)·E·4 bytes. The defaults give 2.5 MiB (1.3 MiB with F16).
// Each unit of FeedForwardLength adds 3·E·Layers·elem bytes (3 KiB with the
// defaults), so it is the knob for the size: WithWeightBytes picks it for a
// wanted size, e.g. FF 6480 for 20 MiB and 13307 for 40 MiB.
//
// llama-server reads nearly all the weights for every token, so they all
// become resident (as mapped file pages, or anonymous memory with
// --no-mmap), and its RSS is about the weights plus a fixed 20 MiB or so
// (binary and libraries, KV cache, buffers; measured with -c 256 on
// x86-64): about 22, 41 and 64 MiB for 2.5, 20 and 40 MiB of weights.
type Options struct {
	// Name goes into general.name, which llama-server prints while loading
	// ("general.name = ..."); its API names the model by --alias, or else
	// by the file's name. ["tiny-llama"]
	Name string
	// Seed picks the pseudo-random weights. The same options give the same
	// file, byte for byte.
	Seed uint64
	// Layers is the number of transformer blocks (llama.block_count). [2]
	Layers int
	// EmbeddingLength is the width of the model (llama.embedding_length).
	// It must be a multiple of HeadCount, with an even quotient (the
	// rotary embedding rotates pairs). [128]
	EmbeddingLength int
	// FeedForwardLength is the hidden width of each block's SwiGLU
	// feed-forward network (llama.feed_forward_length). [4·EmbeddingLength]
	FeedForwardLength int
	// HeadCount is the number of attention heads. [4]
	HeadCount int
	// HeadCountKV is the number of key/value heads; fewer than HeadCount
	// gives grouped-query attention. It must divide HeadCount. [HeadCount]
	HeadCountKV int
	// ContextLength is the training context (llama.context_length), which
	// llama-server uses as its context size when not given -c. [2048]
	ContextLength int
	// F16 stores the matrices as half-precision floats, halving the size;
	// the norm vectors stay F32.
	F16 bool
	// ChatTemplate goes into tokenizer.chat_template. [ChatMLTemplate]
	ChatTemplate string
	// NoChatTemplate leaves tokenizer.chat_template out; llama-server then
	// falls back to its built-in ChatML.
	NoChatTemplate bool
}

// VocabSize is the number of tokens in every file's vocabulary.
var VocabSize = len(newVocab().tokens)

// withDefaults fills in the zero fields.
func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "tiny-llama"
	}
	if o.Layers == 0 {
		o.Layers = 2
	}
	if o.EmbeddingLength == 0 {
		o.EmbeddingLength = 128
	}
	if o.FeedForwardLength == 0 {
		o.FeedForwardLength = 4 * o.EmbeddingLength
	}
	if o.HeadCount == 0 {
		o.HeadCount = 4
	}
	if o.HeadCountKV == 0 {
		o.HeadCountKV = o.HeadCount
	}
	if o.ContextLength == 0 {
		o.ContextLength = 2048
	}
	if o.ChatTemplate == "" {
		o.ChatTemplate = ChatMLTemplate
	}
	return o
}

// check rejects shapes llama.cpp would refuse or that make no model.
func (o Options) check() error {
	switch {
	case o.Layers < 1 || o.Layers > 512: // LLAMA_MAX_LAYERS
		return fmt.Errorf("gguf: Layers %d not in [1, 512]", o.Layers)
	case o.EmbeddingLength < 1 || o.FeedForwardLength < 1 || o.ContextLength < 1:
		return errors.New("gguf: EmbeddingLength, FeedForwardLength and ContextLength must be positive")
	case o.HeadCount < 1 || o.HeadCountKV < 1 || o.HeadCount%o.HeadCountKV != 0:
		return fmt.Errorf("gguf: HeadCountKV %d must divide HeadCount %d", o.HeadCountKV, o.HeadCount)
	case o.EmbeddingLength%o.HeadCount != 0 || (o.EmbeddingLength/o.HeadCount)%2 != 0:
		return fmt.Errorf("gguf: EmbeddingLength %d must be HeadCount %d times an even head size",
			o.EmbeddingLength, o.HeadCount)
	}
	return nil
}

// tensors lists the tensors llama.cpp's LLM_ARCH_LLAMA loader asks for
// (src/models/llama.cpp, load_arch_tensors), with their ggml shapes; see
// tensorInfo for the order of dims. The optional ones (biases, rope_freqs)
// are left out. "output" could be left out too (the loader would reuse
// token_embd) but is written, so that its rows can steer generation; see
// WriteTinyLlama.
func (o Options) tensors() []tensorInfo {
	e := int64(o.EmbeddingLength)
	ekv := e / int64(o.HeadCount) * int64(o.HeadCountKV)
	ff := int64(o.FeedForwardLength)
	nv := int64(VocabSize)
	mat := F32
	if o.F16 {
		mat = F16
	}
	ts := []tensorInfo{
		{"token_embd.weight", []int64{e, nv}, mat},
		{"output_norm.weight", []int64{e}, F32},
		{"output.weight", []int64{e, nv}, mat},
	}
	for i := 0; i < o.Layers; i++ {
		blk := func(s string) string { return fmt.Sprintf("blk.%d.%s.weight", i, s) }
		ts = append(ts,
			tensorInfo{blk("attn_norm"), []int64{e}, F32},
			tensorInfo{blk("attn_q"), []int64{e, e}, mat},
			tensorInfo{blk("attn_k"), []int64{e, ekv}, mat},
			tensorInfo{blk("attn_v"), []int64{e, ekv}, mat},
			tensorInfo{blk("attn_output"), []int64{e, e}, mat},
			tensorInfo{blk("ffn_norm"), []int64{e}, F32},
			tensorInfo{blk("ffn_gate"), []int64{e, ff}, mat},
			tensorInfo{blk("ffn_up"), []int64{e, ff}, mat},
			tensorInfo{blk("ffn_down"), []int64{ff, e}, mat},
		)
	}
	return ts
}

// WeightBytes is the number of bytes of tensor data, padding excluded, that
// WriteTinyLlama writes for these options (zero fields take their
// defaults). The file is larger by the header (about 14 KiB, mostly the
// vocabulary) and by at most Alignment bytes of padding a tensor.
func (o Options) WeightBytes() int64 {
	var n int64
	for _, t := range o.withDefaults().tensors() {
		n += t.bytes()
	}
	return n
}

// WithWeightBytes returns o with FeedForwardLength set so that WeightBytes
// is at least n and as close to it as the shape allows (it overshoots by
// less than 3·EmbeddingLength·Layers·elem bytes). If the other tensors alone
// already take n or more, FeedForwardLength becomes 1.
func (o Options) WithWeightBytes(n int64) Options {
	o = o.withDefaults()
	o.FeedForwardLength = 1
	base := o.WeightBytes()
	elem := F32.Size()
	if o.F16 {
		elem = F16.Size()
	}
	per := 3 * int64(o.EmbeddingLength) * int64(o.Layers) * elem
	if n > base {
		o.FeedForwardLength += int((n - base + per - 1) / per)
	}
	return o
}

// metadata is the KV section: the keys llama.cpp reads for a llama model
// (llama_model_base::load_hparams, llama_model_llama::load_arch_hparams and
// llama_vocab::impl::load), with the GGUF types its loader insists on:
// counts are uint32, epsilons and bases float32, token ids uint32.
func (o Options) metadata(v *vocab) []kv {
	fileType := uint32(0) // LLAMA_FTYPE_ALL_F32
	if o.F16 {
		fileType = 1 // LLAMA_FTYPE_MOSTLY_F16
	}
	headSize := uint32(o.EmbeddingLength / o.HeadCount)
	kvs := []kv{
		kvString("general.architecture", "llama"),
		kvString("general.name", o.Name),
		kvUint32("general.file_type", fileType),
		kvUint32("general.alignment", Alignment),
		kvUint32("llama.vocab_size", uint32(len(v.tokens))),
		kvUint32("llama.context_length", uint32(o.ContextLength)),
		kvUint32("llama.embedding_length", uint32(o.EmbeddingLength)),
		kvUint32("llama.block_count", uint32(o.Layers)),
		kvUint32("llama.feed_forward_length", uint32(o.FeedForwardLength)),
		kvUint32("llama.attention.head_count", uint32(o.HeadCount)),
		kvUint32("llama.attention.head_count_kv", uint32(o.HeadCountKV)),
		// Required for llama; the usual value.
		kvFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5),
		// llama.cpp checks that the rotary dimension is the head size.
		kvUint32("llama.rope.dimension_count", headSize),
		kvFloat32("llama.rope.freq_base", 10000),
		// "llama" is SentencePiece with byte fallback (LLAMA_VOCAB_TYPE_SPM).
		kvString("tokenizer.ggml.model", "llama"),
		kvStrings("tokenizer.ggml.tokens", v.tokens),
		kvFloat32s("tokenizer.ggml.scores", v.scores),
		kvInt32s("tokenizer.ggml.token_type", v.types),
		kvUint32("tokenizer.ggml.bos_token_id", BosID),
		kvUint32("tokenizer.ggml.eos_token_id", EosID),
		kvUint32("tokenizer.ggml.unknown_token_id", UnkID),
		kvBool("tokenizer.ggml.add_bos_token", true),
		kvBool("tokenizer.ggml.add_eos_token", false),
	}
	if !o.NoChatTemplate {
		kvs = append(kvs, kvString("tokenizer.chat_template", o.ChatTemplate))
	}
	return kvs
}

// WriteTinyLlama writes a llama-architecture GGUF v3 model to path.
//
// The weights are pseudo-random, drawn from a stream seeded by Seed and the
// tensor's name, and scaled so that every layer keeps its activations near
// unit size: a matrix with n inputs is uniform with standard deviation
// 1/√n, the norm weights are 1. The rows of output.weight (one a token) are
// zero except for the tokens of whole words (see words), whose rows are
// large enough to give logits with a standard deviation of about 6. So a
// word always beats any other token by a wide margin, and with any usual
// sampler the model generates only words, each with a space before it:
// valid UTF-8, never a lone byte token, and never </s> or <|im_end|>.
// Generation therefore runs until max_tokens (finish_reason "length") or
// the context is full.
//
// The file is written to a temporary name in the same directory and
// renamed into place, so a reader never sees half a file.
func WriteTinyLlama(path string, opts Options) (err error) {
	o := opts.withDefaults()
	if err := o.check(); err != nil {
		return err
	}
	v := newVocab()
	ts := o.tensors()
	head, _, err := header(o.metadata(v), ts)
	if err != nil {
		return err
	}

	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file private; a model is for anyone to read.
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := w.Write(head); err != nil {
		return err
	}
	for _, t := range ts {
		data := o.tensorData(t, v)
		if _, err := w.Write(data); err != nil {
			return err
		}
		if _, err := w.Write(padding(int64(len(data)))); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// tensorData makes the bytes of one tensor.
func (o Options) tensorData(t tensorInfo, v *vocab) []byte {
	n := t.elements()
	vals := make([]float32, n)
	rowLen := int(t.dims[0])
	r := newRand(o.Seed, t.name)
	switch {
	case len(t.dims) == 1:
		// The RMS norm weights: 1 leaves the normalized values as they are.
		for i := range vals {
			vals[i] = 1
		}
	case t.name == "token_embd.weight":
		// Embeddings go through an RMS norm before use, so their scale
		// does not matter; uniform in [-1, 1).
		for i := range vals {
			vals[i] = r.float()
		}
	case t.name == "output.weight":
		// The final RMS norm leaves the hidden state with unit RMS, so a row
		// of standard deviation s gives a logit of standard deviation about
		// s·√E. Only the words' rows are filled; the others stay zero.
		amp := float32(6 * math.Sqrt(3) / math.Sqrt(float64(rowLen)))
		for _, id := range v.output {
			row := vals[id*rowLen : (id+1)*rowLen]
			for i := range row {
				row[i] = amp * r.float()
			}
		}
	default:
		// A uniform distribution on [-a, a) has standard deviation a/√3.
		amp := float32(math.Sqrt(3) / math.Sqrt(float64(rowLen)))
		for i := range vals {
			vals[i] = amp * r.float()
		}
	}

	out := make([]byte, t.bytes())
	if t.typ == F16 {
		for i, x := range vals {
			binary.LittleEndian.PutUint16(out[2*i:], float16(x))
		}
	} else {
		for i, x := range vals {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	}
	return out
}

// rng is SplitMix64: tiny, fast, and fixed here, so a seed gives the same
// weights with any Go version.
type rng struct{ s uint64 }

// newRand seeds a stream from the model's seed and the tensor's name, so a
// tensor's values do not depend on which tensors come before it.
func newRand(seed uint64, name string) *rng {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &rng{s: seed ^ h.Sum64()}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// float is uniform in [-1, 1), with 24 random bits (a float32's precision).
func (r *rng) float() float32 {
	return float32(int32(r.next()>>40)-1<<23) / (1 << 23)
}
