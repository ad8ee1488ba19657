package gguf

import "math"

// float16 converts f to IEEE 754 half precision, rounding to nearest with
// ties to even, as ggml's own conversion does. Values too large become
// infinity; values too small become subnormal halves or zero. NaN stays NaN.
func float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff // biased by 127
	mant := b & 0x7fffff       // 23 bits, without the implicit 1

	switch {
	case exp == 0xff: // infinity or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp == 0 && mant == 0:
		return sign
	}

	// Re-bias the exponent from 127 to 15.
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00 // overflow: infinity
	}

	// m is the full 24-bit significand (with the implicit 1, which a
	// float32 subnormal lacks; those are far below half's range anyway).
	m := mant
	if exp != 0 {
		m |= 0x800000
	}
	// A normal half keeps 11 significant bits, so 13 bits are dropped; a
	// subnormal half (e <= 0) drops 1-e more, since its exponent is fixed.
	shift := uint32(13)
	if e <= 0 {
		shift += uint32(1 - e)
		if shift > 24 {
			return sign // below half of the smallest subnormal: zero
		}
		e = 0
	}
	half := m >> shift
	rest := m & (1<<shift - 1)
	mid := uint32(1) << (shift - 1)
	if rest > mid || (rest == mid && half&1 == 1) {
		half++ // may carry into the exponent, which is then right too
	}
	if e == 0 {
		// Subnormal: the significand carries no implicit bit; a carry into
		// bit 10 makes it the smallest normal number, which is correct.
		return sign | uint16(half)
	}
	// Normal: drop the implicit bit and add the exponent; a rounding carry
	// out of the significand bumps the exponent, possibly to infinity.
	return sign | uint16(uint32(e)<<10+(half-0x400))
}
