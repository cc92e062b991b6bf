package wire

import (
	"errors"
	"fmt"
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
