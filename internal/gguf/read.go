package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Header is what ReadHeader learns from a GGUF file's header: its scalar
// metadata, the lengths of its arrays (and the values of small integer
// arrays) and its tensor infos. The tensor data is never read.
type Header struct {
	Version uint32
	// Meta holds the scalar values by key: uint64 for the unsigned
	// integer types, int64 for the signed ones, float64, bool, and string
	// for strings of at most maxKeptString bytes (longer ones are skipped,
	// e.g. chat templates).
	Meta map[string]any
	// ArrayLen is the element count of every array, by key.
	ArrayLen map[string]uint64
	// Ints holds the values of integer arrays of at most maxKeptArray
	// elements (per-layer head counts, say).
	Ints    map[string][]int64
	Tensors []Tensor
}

// Tensor is one tensor info: its dims in ggml order and its ggml type.
type Tensor struct {
	Name string
	Dims []uint64
	Type TensorType
}

// Limits on what a header may hold, so that a garbage file is refused
// rather than allocated for (llama.cpp's own limits are similar: at most
// GGML_MAX_DIMS dims, names of at most GGML_MAX_NAME bytes).
const (
	maxDims       = 4
	maxKeyLen     = 1 << 16
	maxStringLen  = 1 << 30 // a value string: skipped past this size anyway
	maxKeptString = 4 << 10
	maxKeptArray  = 4096
	maxCount      = 1 << 24 // tensors, KV pairs
	maxArrayLen   = 1 << 32
)

// ReadHeader reads path's GGUF header (versions 2 and 3). A file that is
// not GGUF, is cut short or holds impossible counts is an error.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := readHeader(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	return h, nil
}

type hreader struct {
	r   *bufio.Reader
	buf [8]byte
	err error
}

func (r *hreader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *hreader) fixed(n int) []byte {
	if r.err != nil {
		return r.buf[:n]
	}
	if _, err := io.ReadFull(r.r, r.buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.fail(err)
	}
	return r.buf[:n]
}

func (r *hreader) u8() uint8   { return r.fixed(1)[0] }
func (r *hreader) u16() uint16 { return binary.LittleEndian.Uint16(r.fixed(2)) }
func (r *hreader) u32() uint32 { return binary.LittleEndian.Uint32(r.fixed(4)) }
func (r *hreader) u64() uint64 { return binary.LittleEndian.Uint64(r.fixed(8)) }

func (r *hreader) skip(n uint64) {
	if r.err != nil {
		return
	}
	if m, err := r.r.Discard(int(n)); uint64(m) != n || err != nil {
		r.fail(io.ErrUnexpectedEOF)
	}
}

// str reads a string of at most limit bytes; one longer but within
// maxStringLen is skipped and returned as "" with ok false.
func (r *hreader) str(limit uint64) (s string, ok bool) {
	n := r.u64()
	if r.err != nil {
		return "", false
	}
	if n > maxStringLen {
		r.fail(fmt.Errorf("string of %d bytes", n))
		return "", false
	}
	if n > limit {
		r.skip(n)
		return "", false
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.fail(io.ErrUnexpectedEOF)
		return "", false
	}
	return string(b), true
}

// scalarSize is the size of a fixed-size value type, 0 for the others.
func scalarSize(typ uint32) uint64 {
	switch typ {
	case typeUint8, typeInt8, typeBool:
		return 1
	case typeUint16, typeInt16:
		return 2
	case typeUint32, typeInt32, typeFloat32:
		return 4
	case typeUint64, typeInt64, typeFloat64:
		return 8
	}
	return 0
}

// scalar reads a fixed-size value of type typ.
func (r *hreader) scalar(typ uint32) any {
	switch typ {
	case typeUint8:
		return uint64(r.u8())
	case typeInt8:
		return int64(int8(r.u8()))
	case typeBool:
		return r.u8() != 0
	case typeUint16:
		return uint64(r.u16())
	case typeInt16:
		return int64(int16(r.u16()))
	case typeUint32:
		return uint64(r.u32())
	case typeInt32:
		return int64(int32(r.u32()))
	case typeFloat32:
		return float64(math.Float32frombits(r.u32()))
	case typeUint64:
		return r.u64()
	case typeInt64:
		return int64(r.u64())
	case typeFloat64:
		return math.Float64frombits(r.u64())
	}
	r.fail(fmt.Errorf("unknown value type %d", typ))
	return nil
}

func readHeader(br *bufio.Reader) (*Header, error) {
	r := &hreader{r: br}
	if string(r.fixed(4)) != Magic {
		if r.err != nil {
			return nil, r.err
		}
		return nil, errors.New("not a GGUF file")
	}
	h := &Header{Version: r.u32(), Meta: map[string]any{}, ArrayLen: map[string]uint64{}, Ints: map[string][]int64{}}
	nt, nkv := r.u64(), r.u64()
	if r.err != nil {
		return nil, r.err
	}
	if h.Version < 2 || h.Version > 3 {
		return nil, fmt.Errorf("GGUF version %d not read", h.Version)
	}
	if nt > maxCount || nkv > maxCount {
		return nil, fmt.Errorf("%d tensors and %d KV pairs: too many", nt, nkv)
	}
	for i := uint64(0); i < nkv && r.err == nil; i++ {
		key, _ := r.str(maxKeyLen)
		typ := r.u32()
		if r.err != nil {
			break
		}
		switch typ {
		case typeString:
			if s, ok := r.str(maxKeptString); ok {
				h.Meta[key] = s
			}
		case typeArray:
			et, n := r.u32(), r.u64()
			if r.err != nil {
				break
			}
			if n > maxArrayLen {
				r.fail(fmt.Errorf("%s: array of %d elements", key, n))
				break
			}
			h.ArrayLen[key] = n
			switch size := scalarSize(et); {
			case et == typeString:
				for j := uint64(0); j < n && r.err == nil; j++ {
					r.str(0)
				}
			case size == 0:
				r.fail(fmt.Errorf("%s: array of value type %d", key, et))
			case n <= maxKeptArray && et != typeFloat32 && et != typeFloat64 && et != typeBool:
				ints := make([]int64, n)
				for j := range ints {
					switch v := r.scalar(et).(type) {
					case uint64:
						ints[j] = int64(v)
					case int64:
						ints[j] = v
					}
				}
				h.Ints[key] = ints
			default:
				r.skip(n * size)
			}
		default:
			h.Meta[key] = r.scalar(typ)
		}
	}
	h.Tensors = make([]Tensor, 0, min(nt, 4096))
	for i := uint64(0); i < nt && r.err == nil; i++ {
		name, _ := r.str(maxKeyLen)
		nd := r.u32()
		if r.err == nil && nd > maxDims {
			r.fail(fmt.Errorf("tensor %q has %d dims", name, nd))
		}
		if r.err != nil {
			break
		}
		t := Tensor{Name: name, Dims: make([]uint64, nd)}
		for j := range t.Dims {
			t.Dims[j] = r.u64()
		}
		t.Type = TensorType(r.u32())
		r.u64() // offset
		if r.err == nil {
			if _, err := t.Bytes(); err != nil {
				r.fail(err)
			}
		}
		h.Tensors = append(h.Tensors, t)
	}
	if r.err != nil {
		return nil, r.err
	}
	return h, nil
}

// blockSizes are ggml's (elements a block, bytes a block) by type
// (type_traits in ggml/src/ggml.c; block structs in ggml-common.h).
var blockSizes = map[TensorType][2]uint64{
	0: {1, 4}, 1: {1, 2}, // F32, F16
	2: {32, 18}, 3: {32, 20}, 6: {32, 22}, 7: {32, 24}, 8: {32, 34}, 9: {32, 36}, // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1
	10: {256, 84}, 11: {256, 110}, 12: {256, 144}, 13: {256, 176}, 14: {256, 210}, 15: {256, 292}, // Q2_K..Q8_K
	16: {256, 66}, 17: {256, 74}, 18: {256, 98}, 19: {256, 50}, 20: {32, 18}, // IQ2_XXS IQ2_XS IQ3_XXS IQ1_S IQ4_NL
	21: {256, 110}, 22: {256, 82}, 23: {256, 136}, // IQ3_S IQ2_S IQ4_XS
	24: {1, 1}, 25: {1, 2}, 26: {1, 4}, 27: {1, 8}, 28: {1, 8}, // I8 I16 I32 I64 F64
	29: {256, 56}, 30: {1, 2}, // IQ1_M BF16
	34: {256, 54}, 35: {256, 66}, // TQ1_0 TQ2_0
	39: {32, 17}, 40: {64, 36}, 41: {128, 18}, 42: {64, 18}, // MXFP4 NVFP4 Q1_0 Q2_0
}

// RowBytes is the size of n elements of type t (ggml_row_size); n must be
// a multiple of t's block size.
func (t TensorType) RowBytes(n uint64) (uint64, error) {
	bs, ok := blockSizes[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if n%bs[0] != 0 {
		return 0, fmt.Errorf("%d elements are not whole blocks of %d", n, bs[0])
	}
	return n / bs[0] * bs[1], nil
}

// Bytes is the size of t's data (ggml_nbytes for a contiguous tensor).
func (t Tensor) Bytes() (int64, error) {
	n := uint64(1)
	for _, d := range t.Dims {
		if d != 0 && n > math.MaxInt64/4/d {
			return 0, fmt.Errorf("tensor %q: too large", t.Name)
		}
		n *= d
	}
	if len(t.Dims) > 0 && t.Dims[0] != 0 {
		if _, err := t.Type.RowBytes(t.Dims[0]); err != nil {
			return 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
	}
	b, err := t.Type.RowBytes(n)
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return int64(b), nil
}
