package wire

import (
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"
)

// Forwarded tensors travel from one tier's model output to the next
// tier's input record as bytes: the function writes them into its binary
// answer once (Float32TensorOf does not copy), and the connector copies
// them from the answer into the next tier's record (DecodeDecisionsSpliced,
// AppendMessageSpliced) without converting them to float32 and back.

// EncodedTensor is a tensor in the binary form (dtype, rank, dims, data
// length, data), checked structurally, as it was read from a binary
// batch: a slice of that batch.
type EncodedTensor []byte

// DecodeDecisionsSpliced decodes a binary batch of decisions as
// DecodeDecisions does, except that a forward decision's tensor is not
// decoded: it is checked structurally and returned as fwds[i], its
// encoding in b, with ds[i].Forward left nil (fwds[i] is nil for an
// exit). The fwds alias b; the rest does not.
func DecodeDecisionsSpliced(b []byte) (ds []Decision, fwds []EncodedTensor, err error) {
	d := decoder{b: b}
	if err := d.header(kindDecisions); err != nil {
		return nil, nil, err
	}
	n, err := d.count("decision count", minDecisionLen)
	if err != nil {
		return nil, nil, err
	}
	ds = make([]Decision, 0, min(n, maxPrealloc))
	fwds = make([]EncodedTensor, 0, min(n, maxPrealloc))
	for i := range n {
		ds, fwds = append(ds, Decision{}), append(fwds, nil)
		if err := d.decision(&ds[i], &fwds[i]); err != nil {
			return nil, nil, fmt.Errorf("decision %d: %w", i, err)
		}
	}
	if err := d.end(); err != nil {
		return nil, nil, fmt.Errorf("after %d decisions: %w", n, err)
	}
	return ds, fwds, nil
}

// skipTensor checks the tensor at the decoder's position as tensor does,
// without decoding it, and returns its encoding.
func (d *decoder) skipTensor() (EncodedTensor, error) {
	start := d.off
	dt, err := d.byte("dtype")
	if err != nil {
		return nil, err
	}
	if !DType(dt).valid() {
		return nil, fmt.Errorf("unknown dtype %d", dt)
	}
	rank, err := d.uvarint("rank")
	if err != nil {
		return nil, err
	}
	if rank < 1 || rank > MaxRank {
		return nil, fmt.Errorf("rank %d is not in 1..%d", rank, MaxRank)
	}
	n := uint64(1)
	for i := range rank {
		v, err := d.uvarint("dim")
		if err != nil {
			return nil, err
		}
		if v < 1 || v > MaxElements {
			return nil, fmt.Errorf("dim %d is %d, want 1..%d", i, v, MaxElements)
		}
		if n *= v; n > MaxElements {
			return nil, fmt.Errorf("shape: more than %d elements", MaxElements)
		}
	}
	size, err := d.uvarint("data length")
	if err != nil {
		return nil, err
	}
	if want := n * uint64(DType(dt).Size()); size != want {
		return nil, fmt.Errorf("data is %d bytes, want %d for %d %s elements", size, want, n, DType(dt))
	}
	if size > uint64(d.remaining()) {
		return nil, d.truncated("data", size)
	}
	d.off += int(size)
	return EncodedTensor(d.b[start:d.off:d.off]), nil
}

// AppendMessageSpliced appends what AppendMessage(dst, Binary, m) would,
// with t, a tensor as DecodeDecisionsSpliced returns it, in place of
// m.Tensor: t's bytes are copied as they are. On error it returns dst
// unchanged.
func AppendMessageSpliced(dst []byte, m *Message, t EncodedTensor) ([]byte, error) {
	if err := checkMessageHead(m); err != nil {
		return dst, fmt.Errorf("message: %w", err)
	}
	out := slices.Grow(dst, headerLen+messageHeadSize(m)+len(t))
	out = appendMessageHead(appendHeader(out, kindMessage), m)
	return append(out, t...), nil
}

// Float32TensorOf returns a float32 tensor with the given shape whose
// data is v's memory where the host is little-endian, as the wire form
// is: no copy (else a copy, as Float32Tensor makes). The tensor must not
// outlive the caller's use of v, nor v change while the tensor is used.
func Float32TensorOf(shape []int, v []float32) Tensor {
	if len(v) == 0 || binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return Float32Tensor(shape, v)
	}
	return Tensor{DType: Float32, Shape: shape, Data: unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))}
}
