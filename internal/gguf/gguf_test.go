package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parsed is what readGGUF finds in a file: enough to check it the way
// llama.cpp's gguf_init_from_file would.
type parsed struct {
	version    uint32
	kv         map[string]any // scalars as Go values, arrays as slices
	kvOrder    []string
	tensors    []parsedTensor
	dataOffset int64
	size       int64
	raw        []byte
}

type parsedTensor struct {
	name   string
	dims   []int64
	typ    TensorType
	offset int64 // from the start of the data section
}

func (t parsedTensor) bytes() int64 {
	n := t.typ.Size()
	for _, d := range t.dims {
		n *= d
	}
	return n
}

// reader decodes GGUF's little-endian values from a byte slice.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.off+n > len(r.b) {
		r.err = fmt.Errorf("short read of %d bytes at %d", n, r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if s := r.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (r *reader) str() string {
	n := r.u64()
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("string length %d too large", n)
		return ""
	}
	return string(r.take(int(n)))
}

// value reads one value of type typ (not an array).
func (r *reader) value(typ uint32) any {
	switch typ {
	case typeUint8:
		return r.take(1)[0]
	case typeInt8:
		return int8(r.take(1)[0])
	case typeUint16:
		return binary.LittleEndian.Uint16(r.take(2))
	case typeInt16:
		return int16(binary.LittleEndian.Uint16(r.take(2)))
	case typeUint32:
		return r.u32()
	case typeInt32:
		return int32(r.u32())
	case typeFloat32:
		return math.Float32frombits(r.u32())
	case typeBool:
		b := r.take(1)[0]
		if b > 1 {
			r.err = fmt.Errorf("bool byte %d", b)
		}
		return b == 1
	case typeString:
		return r.str()
	case typeUint64:
		return r.u64()
	case typeInt64:
		return int64(r.u64())
	case typeFloat64:
		return math.Float64frombits(r.u64())
	}
	r.err = fmt.Errorf("bad value type %d", typ)
	return nil
}

func readGGUF(t *testing.T, path string) *parsed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &reader{b: b}
	p := &parsed{kv: map[string]any{}, raw: b, size: int64(len(b))}
	if magic := string(r.take(4)); magic != Magic {
		t.Fatalf("magic %q", magic)
	}
	p.version = r.u32()
	nTensors := r.u64()
	nKV := r.u64()
	for i := uint64(0); i < nKV && r.err == nil; i++ {
		key := r.str()
		if _, dup := p.kv[key]; dup || key == "" {
			t.Fatalf("empty or duplicate key %q", key)
		}
		typ := r.u32()
		var v any
		if typ == typeArray {
			et := r.u32()
			n := r.u64()
			switch et {
			case typeString:
				s := make([]string, n)
				for j := range s {
					s[j] = r.str()
				}
				v = s
			case typeFloat32:
				s := make([]float32, n)
				for j := range s {
					s[j] = r.value(et).(float32)
				}
				v = s
			case typeInt32:
				s := make([]int32, n)
				for j := range s {
					s[j] = r.value(et).(int32)
				}
				v = s
			default:
				t.Fatalf("key %q: unexpected array type %d", key, et)
			}
		} else {
			v = r.value(typ)
		}
		p.kv[key] = v
		p.kvOrder = append(p.kvOrder, key)
	}
	for i := uint64(0); i < nTensors && r.err == nil; i++ {
		var pt parsedTensor
		pt.name = r.str()
		nd := r.u32()
		if nd < 1 || nd > 4 {
			t.Fatalf("tensor %q: %d dims", pt.name, nd)
		}
		for j := uint32(0); j < nd; j++ {
			pt.dims = append(pt.dims, int64(r.u64()))
		}
		pt.typ = TensorType(r.u32())
		pt.offset = int64(r.u64())
		p.tensors = append(p.tensors, pt)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	align := int64(Alignment)
	if a, ok := p.kv["general.alignment"].(uint32); ok {
		align = int64(a)
	}
	p.dataOffset = (int64(r.off) + align - 1) / align * align
	// The padding before the data section must be zeros.
	for _, c := range b[r.off:p.dataOffset] {
		if c != 0 {
			t.Fatal("non-zero padding before the data section")
		}
	}
	return p
}

func (p *parsed) tensor(name string) (parsedTensor, bool) {
	for _, t := range p.tensors {
		if t.name == name {
			return t, true
		}
	}
	return parsedTensor{}, false
}

func (p *parsed) data(t parsedTensor) []byte {
	start := p.dataOffset + t.offset
	return p.raw[start : start+t.bytes()]
}

func writeModel(t *testing.T, o Options) (string, *parsed) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := WriteTinyLlama(path, o); err != nil {
		t.Fatal(err)
	}
	return path, readGGUF(t, path)
}

func TestLayout(t *testing.T) {
	for _, o := range []Options{
		{},
		{F16: true, Layers: 3, HeadCount: 8, HeadCountKV: 2, FeedForwardLength: 77},
		{EmbeddingLength: 64, HeadCount: 2, NoChatTemplate: true},
	} {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			_, p := writeModel(t, o)
			d := o.withDefaults()
			if p.version != Version {
				t.Errorf("version %d", p.version)
			}
			if got := p.kv["general.alignment"]; got != uint32(Alignment) {
				t.Errorf("general.alignment = %v", got)
			}
			if want := 3 + 9*d.Layers; len(p.tensors) != want {
				t.Errorf("%d tensors, want %d", len(p.tensors), want)
			}
			wantKV := 23
			if !o.NoChatTemplate {
				wantKV++
			}
			if len(p.kvOrder) != wantKV {
				t.Errorf("%d KV pairs, want %d: %v", len(p.kvOrder), wantKV, p.kvOrder)
			}
			if p.dataOffset%Alignment != 0 {
				t.Errorf("data section at %d", p.dataOffset)
			}
			// Offsets must be the running sum of the padded sizes, as
			// gguf_init_from_file checks, and the file must end with the
			// last tensor's padding.
			var next, weights int64
			for _, pt := range p.tensors {
				if pt.offset != next || pt.offset%Alignment != 0 {
					t.Errorf("%s at offset %d, want %d", pt.name, pt.offset, next)
				}
				weights += pt.bytes()
				next += pad(pt.bytes())
			}
			if p.size != p.dataOffset+next {
				t.Errorf("file size %d, want %d + %d", p.size, p.dataOffset, next)
			}
			if weights != o.WeightBytes() {
				t.Errorf("WeightBytes %d, file has %d", o.WeightBytes(), weights)
			}
			if o.NoChatTemplate == (p.kv["tokenizer.chat_template"] != nil) {
				t.Errorf("chat template present: %v", p.kv["tokenizer.chat_template"] != nil)
			}
		})
	}
}

func TestMetadataAndShapes(t *testing.T) {
	o := Options{Name: "shape-test", Layers: 2, EmbeddingLength: 64, HeadCount: 4, HeadCountKV: 2, FeedForwardLength: 96, ContextLength: 512, F16: true}
	_, p := writeModel(t, o)

	want := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           "shape-test",
		"general.file_type":                      uint32(1),
		"llama.context_length":                   uint32(512),
		"llama.embedding_length":                 uint32(64),
		"llama.block_count":                      uint32(2),
		"llama.feed_forward_length":              uint32(96),
		"llama.attention.head_count":             uint32(4),
		"llama.attention.head_count_kv":          uint32(2),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(16),
		"llama.vocab_size":                       uint32(VocabSize),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.bos_token_id":            uint32(BosID),
		"tokenizer.ggml.eos_token_id":            uint32(EosID),
		"tokenizer.ggml.unknown_token_id":        uint32(UnkID),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.chat_template":                ChatMLTemplate,
	}
	for k, v := range want {
		if got := p.kv[k]; got != v {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}

	tokens := p.kv["tokenizer.ggml.tokens"].([]string)
	scores := p.kv["tokenizer.ggml.scores"].([]float32)
	types := p.kv["tokenizer.ggml.token_type"].([]int32)
	if len(tokens) != VocabSize || len(scores) != VocabSize || len(types) != VocabSize {
		t.Fatalf("%d tokens, %d scores, %d types, want %d", len(tokens), len(scores), len(types), VocabSize)
	}
	seen := map[string]bool{}
	for i, tok := range tokens {
		// llama.cpp asserts that no two tokens are spelled alike.
		if tok == "" || seen[tok] {
			t.Errorf("token %d %q empty or repeated", i, tok)
		}
		seen[tok] = true
	}
	for b := 0; b < 256; b++ {
		if tok := tokens[3+b]; tok != fmt.Sprintf("<0x%02X>", b) || types[3+b] != tokenByte {
			t.Errorf("byte token %d is %q type %d", b, tok, types[3+b])
		}
	}
	if tokens[BosID] != "<s>" || tokens[EosID] != "</s>" || tokens[UnkID] != "<unk>" {
		t.Errorf("special tokens %q", tokens[:3])
	}
	for _, w := range []string{"▁hello", "▁hell", "▁h", "▁", "<|im_start|>", "<|im_end|>"} {
		if !seen[w] {
			t.Errorf("no token %q", w)
		}
	}

	e, ekv, ff := int64(64), int64(32), int64(96)
	shapes := map[string][]int64{
		"token_embd.weight":        {e, int64(VocabSize)},
		"output.weight":            {e, int64(VocabSize)},
		"output_norm.weight":       {e},
		"blk.1.attn_norm.weight":   {e},
		"blk.1.attn_q.weight":      {e, e},
		"blk.1.attn_k.weight":      {e, ekv},
		"blk.1.attn_v.weight":      {e, ekv},
		"blk.1.attn_output.weight": {e, e},
		"blk.1.ffn_norm.weight":    {e},
		"blk.1.ffn_gate.weight":    {e, ff},
		"blk.1.ffn_up.weight":      {e, ff},
		"blk.1.ffn_down.weight":    {ff, e},
	}
	for name, dims := range shapes {
		pt, ok := p.tensor(name)
		if !ok {
			t.Errorf("no tensor %s", name)
			continue
		}
		if fmt.Sprint(pt.dims) != fmt.Sprint(dims) {
			t.Errorf("%s dims %v, want %v", name, pt.dims, dims)
		}
		wantType := F16
		if len(dims) == 1 {
			wantType = F32
		}
		if pt.typ != wantType {
			t.Errorf("%s type %v, want %v", name, pt.typ, wantType)
		}
	}
}

// TestOutputRows checks what makes generation produce words only: the rows
// of output.weight are zero except for the words', and the weights are
// finite and not all zero.
func TestOutputRows(t *testing.T) {
	_, p := writeModel(t, Options{Seed: 7})
	v := newVocab()
	pt, _ := p.tensor("output.weight")
	data := p.data(pt)
	rowBytes := int(pt.dims[0]) * 4
	for id := 0; id < VocabSize; id++ {
		row := data[id*rowBytes : (id+1)*rowBytes]
		zero := bytes.Count(row, []byte{0}) == len(row)
		if want := !contains(v.output, id); zero != want {
			t.Errorf("token %d %q: zero row %v, want %v", id, v.tokens[id], zero, want)
		}
	}
	if len(v.output) != len(words) {
		t.Errorf("%d output tokens for %d words", len(v.output), len(words))
	}
	for _, name := range []string{"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"} {
		pt, _ := p.tensor(name)
		var sum, sumSq float64
		d := p.data(pt)
		n := len(d) / 4
		for i := 0; i < n; i++ {
			x := float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("%s[%d] = %v", name, i, x)
			}
			sum += x
			sumSq += x * x
		}
		if sumSq == 0 || math.Abs(sum/float64(n)) > 0.05 {
			t.Errorf("%s: mean %v, mean square %v", name, sum/float64(n), sumSq/float64(n))
		}
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, o Options) [32]byte {
		path := filepath.Join(dir, name)
		if err := WriteTinyLlama(path, o); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("mode %v", fi.Mode())
		}
		return fileHash(t, path)
	}
	a := write("a.gguf", Options{Seed: 1})
	b := write("b.gguf", Options{Seed: 1})
	c := write("c.gguf", Options{Seed: 2})
	if a != b {
		t.Error("same options, different files")
	}
	if a == c {
		t.Error("different seeds, same file")
	}
	// Writing over an existing file replaces it and leaves no temporary.
	if got := write("a.gguf", Options{Seed: 2}); got != c {
		t.Error("writing over a file did not replace it")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("%d files in the directory, want 3", len(entries))
	}
}

func TestWithWeightBytes(t *testing.T) {
	for _, o := range []Options{{}, {F16: true}, {EmbeddingLength: 256, Layers: 4}} {
		for _, n := range []int64{20 << 20, 40 << 20, 8 << 20} {
			s := o.WithWeightBytes(n)
			d := s.withDefaults()
			elem := int64(4)
			if o.F16 {
				elem = 2
			}
			step := 3 * int64(d.EmbeddingLength) * int64(d.Layers) * elem
			if got := s.WeightBytes(); got < n || got >= n+step {
				t.Errorf("%+v WithWeightBytes(%d): %d bytes (FFN %d)", o, n, got, s.FeedForwardLength)
			}
			if err := d.check(); err != nil {
				t.Error(err)
			}
		}
	}
	if s := (Options{}).WithWeightBytes(1); s.FeedForwardLength != 1 {
		t.Errorf("tiny target: FFN %d", s.FeedForwardLength)
	}
}

func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{Layers: -1},
		{Layers: 513},
		{EmbeddingLength: 100, HeadCount: 3}, // not a multiple
		{EmbeddingLength: 12, HeadCount: 4},  // odd head size
		{HeadCount: 4, HeadCountKV: 3},       // does not divide
		{FeedForwardLength: -5},
	} {
		err := WriteTinyLlama(filepath.Join(dir, "bad.gguf"), o)
		if err == nil || !strings.HasPrefix(err.Error(), "gguf: ") {
			t.Errorf("%+v: err %v", o, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
	if err := WriteTinyLlama(filepath.Join(dir, "no", "such", "dir.gguf"), Options{}); err == nil {
		t.Error("no error for a missing directory")
	}
}

func TestFloat16(t *testing.T) {
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{0.1, 0x2e66},
		{65504, 0x7bff},
		{65520, 0x7c00}, // rounds up to infinity
		{1e6, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{6.103515625e-05, 0x0400},    // smallest normal
		{5.960464477539063e-08, 1},   // smallest subnormal
		{2.98023223876953125e-08, 0}, // half of it: ties to even, 0
		{4.470348358154297e-08, 1},   // 0.75 of it: rounds up
		{1e-10, 0},
		{1.0009765625, 0x3c01},          // 1 + 2^-10
		{1.00048828125, 0x3c00},         // 1 + 2^-11: tie, to even
		{1.00146484375, 0x3c02},         // 1 + 3·2^-11: tie, to even
		{6.097555160522461e-05, 0x03ff}, // largest subnormal
	} {
		if got := float16(c.f); got != c.want {
			t.Errorf("float16(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	if got := float16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("NaN gave %#04x", got)
	}
}
