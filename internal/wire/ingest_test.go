package wire

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeIngestJSON(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		dt       DType
		shape    []int
		want     string // error substring; "" for success
	}{
		{"uint8 ok", `{"id":"a","device":"d","data":[0,1,255,3]}`, Uint8, []int{2, 2}, ""},
		{"float ok no id", `{"data":[0.5,1e-3]}`, Float32, []int{2}, ""},
		{"too few", `{"data":[1,2,3]}`, Uint8, []int{2, 2}, "data"},
		{"too many", `{"data":[1,2,3,4,5]}`, Uint8, []int{2, 2}, "data"},
		{"uint8 out of range", `{"data":[1,2,3,256]}`, Uint8, []int{2, 2}, "256"},
		{"unknown field", `{"data":[1,2,3,4],"tensor":{}}`, Uint8, []int{2, 2}, "tensor"},
		{"missing data", `{"id":"x"}`, Uint8, []int{2, 2}, "data: missing"},
		{"malformed", `{"data":[1,2,`, Uint8, []int{2, 2}, ""},
		{"trailing", `{"data":[1,2,3,4]} x`, Uint8, []int{2, 2}, ""},
		{"empty", ``, Uint8, []int{2, 2}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeIngestJSON([]byte(tc.in), tc.dt, tc.shape)
			ok := tc.want == "" && !strings.HasPrefix(tc.name, "malformed") && tc.name != "trailing"
			if ok {
				if err != nil {
					t.Fatal(err)
				}
				if m.Tensor.Len() != NumElements(tc.shape) || m.Tensor.DType != tc.dt {
					t.Errorf("tensor %+v", m.Tensor)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAppendIngestJSONRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Message
	}{
		{"uint8 with id", Message{ID: "a\"1", Device: "dev", SentAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			Tensor: Tensor{DType: Uint8, Shape: []int{2, 2}, Data: []byte{0, 9, 99, 255}}}},
		{"float32 bare", Message{Tensor: Float32Tensor([]int{2}, []float32{0.1, -3e38})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := AppendIngestJSON(nil, &tc.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeIngestJSON(b, tc.m.Tensor.DType, tc.m.Tensor.Shape)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("%s decoded to %+v, want %+v", b, got, tc.m)
			}
		})
	}
	nan := Message{Tensor: Float32Tensor([]int{1}, []float32{float32(math.NaN())})}
	if b, err := AppendIngestJSON([]byte("kept"), &nan); err == nil || !strings.Contains(err.Error(), "data: element 0 is NaN") || string(b) != "kept" {
		t.Errorf("NaN: AppendIngestJSON = %q, %v; want \"kept\" and data: element 0 is NaN", b, err)
	}
}
