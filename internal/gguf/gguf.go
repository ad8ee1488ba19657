// Package gguf writes tiny, valid GGUF model files for tests.
//
// The files are llama-architecture models with deterministic pseudo-random
// weights that llama.cpp's llama-server loads and serves, so an integration
// test can start a real backend without downloading a model. The generated
// text is gibberish made of whole English words; see WriteTinyLlama.
//
// # File layout (GGUF version 3, all integers little-endian)
//
//	magic "GGUF" | version uint32 | tensor count uint64 | KV count uint64
//	KV pairs:     key string | value type uint32 | value
//	tensor infos: name string | n_dims uint32 | dims [n_dims]uint64 |
//	              ggml type uint32 | offset uint64
//	padding to the alignment (general.alignment, 32 by default)
//	tensor data:  each tensor at its offset, which counts from the start of
//	              the data section; each tensor is padded to the alignment
//
// A string is a uint64 byte length followed by the bytes (no terminator).
// An array value is element type uint32 | count uint64 | the elements.
// llama.cpp (ggml/src/gguf.cpp) insists that the offsets are exactly the
// running sum of the padded tensor sizes, in the order of the infos.
package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version these files have.
const Version = 3

// Alignment is the alignment of the data section and of every tensor in it,
// in bytes. It is GGUF's default, and the files also say so in
// general.alignment.
const Alignment = 32

// Value types of KV pairs (enum gguf_type in ggml/include/gguf.h).
const (
	typeUint8   uint32 = 0
	typeInt8    uint32 = 1
	typeUint16  uint32 = 2
	typeInt16   uint32 = 3
	typeUint32  uint32 = 4
	typeInt32   uint32 = 5
	typeFloat32 uint32 = 6
	typeBool    uint32 = 7
	typeString  uint32 = 8
	typeArray   uint32 = 9
	typeUint64  uint32 = 10
	typeInt64   uint32 = 11
	typeFloat64 uint32 = 12
)

// TensorType is a ggml tensor element type (enum ggml_type in ggml.h). Only
// the two unquantized float types are written here: they have a block size
// of 1, so any row length is allowed.
type TensorType uint32

const (
	F32 TensorType = 0 // 4 bytes an element
	F16 TensorType = 1 // 2 bytes an element, IEEE 754 half precision
)

// Size is the size of one element in bytes.
func (t TensorType) Size() int64 {
	if t == F16 {
		return 2
	}
	return 4
}

func (t TensorType) String() string {
	if t == F16 {
		return "F16"
	}
	return "F32"
}

// kv is one metadata pair, already encoded: typ and the value bytes that
// follow it (for an array, the element type, count and elements).
type kv struct {
	key   string
	typ   uint32
	value []byte
}

// tensorInfo describes one tensor. Dims are in ggml order: dims[0] is the
// length of a row (the fastest-varying index), so a matrix that maps n_in
// inputs to n_out outputs is {n_in, n_out} and is stored as n_out rows of
// n_in elements.
type tensorInfo struct {
	name string
	dims []int64
	typ  TensorType
}

func (t tensorInfo) elements() int64 {
	n := int64(1)
	for _, d := range t.dims {
		n *= d
	}
	return n
}

func (t tensorInfo) bytes() int64 { return t.elements() * t.typ.Size() }

// pad rounds n up to a multiple of Alignment.
func pad(n int64) int64 { return (n + Alignment - 1) / Alignment * Alignment }

// le is a little-endian byte appender; GGUF is little-endian throughout.
type le struct{ b []byte }

func (e *le) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *le) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *le) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }

func kvString(key, v string) kv {
	var e le
	e.str(v)
	return kv{key, typeString, e.b}
}

func kvUint32(key string, v uint32) kv {
	var e le
	e.u32(v)
	return kv{key, typeUint32, e.b}
}

func kvFloat32(key string, v float32) kv {
	var e le
	e.u32(math.Float32bits(v))
	return kv{key, typeFloat32, e.b}
}

// kvBool: GGUF stores a bool as one byte, 0 or 1.
func kvBool(key string, v bool) kv {
	b := byte(0)
	if v {
		b = 1
	}
	return kv{key, typeBool, []byte{b}}
}

func kvStrings(key string, vs []string) kv {
	var e le
	e.u32(typeString)
	e.u64(uint64(len(vs)))
	for _, v := range vs {
		e.str(v)
	}
	return kv{key, typeArray, e.b}
}

func kvFloat32s(key string, vs []float32) kv {
	var e le
	e.u32(typeFloat32)
	e.u64(uint64(len(vs)))
	for _, v := range vs {
		e.u32(math.Float32bits(v))
	}
	return kv{key, typeArray, e.b}
}

func kvInt32s(key string, vs []int32) kv {
	var e le
	e.u32(typeInt32)
	e.u64(uint64(len(vs)))
	for _, v := range vs {
		e.u32(uint32(v))
	}
	return kv{key, typeArray, e.b}
}

// header encodes everything before the data section: the fixed header, the
// KV pairs and the tensor infos with their offsets, padded to Alignment. It
// also returns the total size of the data section.
func header(kvs []kv, tensors []tensorInfo) ([]byte, int64, error) {
	seen := make(map[string]bool, len(kvs))
	for _, p := range kvs {
		if p.key == "" || seen[p.key] {
			return nil, 0, fmt.Errorf("gguf: empty or duplicate key %q", p.key)
		}
		seen[p.key] = true
	}
	var e le
	e.b = append(e.b, Magic...)
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, p := range kvs {
		e.str(p.key)
		e.u32(p.typ)
		e.b = append(e.b, p.value...)
	}
	var offset int64
	names := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		// GGML_MAX_NAME is 64 including the terminating NUL.
		if len(t.name) >= 64 || names[t.name] {
			return nil, 0, fmt.Errorf("gguf: bad or duplicate tensor name %q", t.name)
		}
		names[t.name] = true
		e.str(t.name)
		e.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			e.u64(uint64(d))
		}
		e.u32(uint32(t.typ))
		e.u64(uint64(offset))
		offset += pad(t.bytes())
	}
	e.b = append(e.b, make([]byte, pad(int64(len(e.b)))-int64(len(e.b)))...)
	return e.b, offset, nil
}

// padding returns the zero bytes that follow n bytes of tensor data.
func padding(n int64) []byte { return bytes.Repeat([]byte{0}, int(pad(n)-n)) }
