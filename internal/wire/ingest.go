package wire

import (
	"errors"
	"fmt"
	"slices"
)

var ingestFields = []string{"id", "device", "sent_at", "data"}

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
	r := jsonReader{b: b}
	if r.skipSpace(); r.i == len(b) {
		return Message{}, errEmpty
	}
	var m Message
	hasData := false
	err = r.object(ingestFields, func(k int) error {
		var err error
		switch k {
		case 0:
			m.ID, err = r.string(false)
		case 1:
			m.Device, err = r.string(false)
		case 2:
			m.SentAt, err = r.time()
		case 3:
			hasData = true
			var data []byte
			if data, err = r.data(dt, n); err == nil {
				m.Tensor = Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: data}
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ingestFields[k], err)
		}
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	if err := r.end(); err != nil {
		return Message{}, err
	}
	if !hasData {
		return Message{}, errors.New("data: missing")
	}
	return m, nil
}

// AppendIngestJSON appends m in the form DecodeIngestJSON reads, as a
// device posts it: its id, device and sent_at when set, and its tensor's
// elements as data (route and hops are not part of the form).
func AppendIngestJSON(dst []byte, m *Message) ([]byte, error) {
	if err := checkMessage(m); err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, 4*m.Tensor.Len()+64+len(m.ID)+len(m.Device))
	dst = append(dst, '{')
	if m.ID != "" {
		dst = append(dst, `"id":`...)
		dst = appendJSONString(dst, m.ID)
		dst = append(dst, ',')
	}
	if m.Device != "" {
		dst = append(dst, `"device":`...)
		dst = appendJSONString(dst, m.Device)
		dst = append(dst, ',')
	}
	if !m.SentAt.IsZero() {
		dst = append(dst, `"sent_at":`...)
		dst = appendJSONTime(dst, m.SentAt)
		dst = append(dst, ',')
	}
	dst = append(dst, `"data":`...)
	out, err := appendDataJSON(dst, &m.Tensor)
	if err != nil {
		return dst, fmt.Errorf("data: %w", err)
	}
	return append(out, '}'), nil
}
