package wire

import (
	"fmt"
	"slices"
)

// DecodeIngestJSON reads what a device posts to a funnel as JSON,
// {"id"?, "device"?, "sent_at"?, "data":[…]}, where data holds one sample's
// elements of the pipeline input's dtype and as many as shape has. The
// returned tensor has that dtype and shape. Callers still call
// Tensor.Validate for NaN and Inf.
func DecodeIngestJSON(b []byte, dt DType, shape []int) (Message, error) {
	n, err := checkShape(shape)
	if err != nil {
		return Message{}, fmt.Errorf("input shape: %w", err)
	}
	return decodeIngestJSON(b, dt, shape, n)
}

// AppendIngestJSON appends m in the form DecodeIngestJSON reads, as a
// device posts it: its id, device and sent_at when set, and its tensor's
// elements as data (route and hops are not part of the form).
func AppendIngestJSON(dst []byte, m *Message) ([]byte, error) {
	if err := checkMessage(m); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = slices.Grow(dst, 4*m.Tensor.Len()+64+len(m.ID)+len(m.Device))
	dst = appendOriginJSON(append(dst, '{'), m)
	out, err := appendDataJSON(append(dst, `"data":`...), &m.Tensor)
	if err != nil {
		return dst[:start], fmt.Errorf("data: %w", err)
	}
	return append(out, '}'), nil
}
