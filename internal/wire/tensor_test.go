package wire_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestDType(t *testing.T) {
	tests := []struct {
		d    wire.DType
		name string
		size int
	}{
		{wire.Float32, "float32", 4},
		{wire.Uint8, "uint8", 1},
		{wire.DTypeInvalid, "invalid", 0},
		{wire.DType(9), "DType(9)", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.name {
				t.Errorf("String() = %q, want %q", got, tt.name)
			}
			if got := tt.d.Size(); got != tt.size {
				t.Errorf("Size() = %d, want %d", got, tt.size)
			}
			text, err := tt.d.MarshalText()
			if tt.size == 0 {
				if err == nil {
					t.Errorf("MarshalText() = %q, want an error", text)
				}
				return
			}
			if err != nil || string(text) != tt.name {
				t.Errorf("MarshalText() = %q, %v; want %q", text, err, tt.name)
			}
			got, err := wire.ParseDType(tt.name)
			if err != nil || got != tt.d {
				t.Errorf("ParseDType(%q) = %v, %v; want %v", tt.name, got, err, tt.d)
			}
		})
	}
}

func TestParseDTypeErrors(t *testing.T) {
	for _, s := range []string{"", "float64", "Float32", "invalid", "uint8 "} {
		t.Run(s, func(t *testing.T) {
			d, err := wire.ParseDType(s)
			if err == nil {
				t.Fatalf("ParseDType(%q) = %v, want an error", s, d)
			}
			for _, want := range []string{`"` + s + `"`, `"float32"`, `"uint8"`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %s", err, want)
				}
			}
		})
	}
}

// DType is written by name in JSON and YAML configs.
func TestDTypeText(t *testing.T) {
	type config struct {
		Input wire.DType `json:"input"`
	}
	b, err := json.Marshal(config{Input: wire.Uint8})
	if err != nil || string(b) != `{"input":"uint8"}` {
		t.Fatalf("json.Marshal = %s, %v", b, err)
	}
	var c config
	if err := json.Unmarshal([]byte(`{"input":"float32"}`), &c); err != nil || c.Input != wire.Float32 {
		t.Fatalf("json.Unmarshal = %v, %v; want float32", c.Input, err)
	}
	if err := json.Unmarshal([]byte(`{"input":"int8"}`), &c); err == nil || !strings.Contains(err.Error(), `unknown dtype "int8"`) {
		t.Fatalf("json.Unmarshal of int8: error = %v, want unknown dtype", err)
	}
	if _, err := json.Marshal(config{}); err == nil {
		t.Fatal("json.Marshal of an invalid dtype succeeded")
	}
}

func TestNumElements(t *testing.T) {
	tests := []struct {
		name  string
		shape []int
		want  int
	}{
		{"empty", nil, 1},
		{"vector", []int{32}, 32},
		{"image", []int{1, 28, 28}, 784},
		{"zero dim", []int{3, 0, 2}, 0},
		{"negative dim", []int{3, -1}, -1},
		{"negative after zero", []int{0, -1}, -1},
		{"overflow", []int{1 << 31, 1 << 31, 1 << 31}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wire.NumElements(tt.shape); got != tt.want {
				t.Errorf("NumElements(%v) = %d, want %d", tt.shape, got, tt.want)
			}
		})
	}
	if got := uint8Tensor(1, 2, 3).Len(); got != 6 {
		t.Errorf("Len() = %d, want 6", got)
	}
}

func TestValidate(t *testing.T) {
	nanAt17 := make([]float32, 20)
	nanAt17[17] = float32(math.NaN())
	tests := []struct {
		name   string
		tensor wire.Tensor
		want   string // substring of the error, "" for valid
	}{
		{"uint8", uint8Tensor(1, 1, 28, 28), ""},
		{"float32", wire.Float32Tensor([]int{len(edgeFloats)}, edgeFloats), ""},
		{"rank 8", uint8Tensor(1, 1, 1, 1, 1, 1, 1, 1, 2), ""},
		{"NaN", wire.Float32Tensor([]int{4, 5}, nanAt17), "element 17 is NaN"},
		{"+Inf", wire.Float32Tensor([]int{2}, []float32{1, float32(math.Inf(1))}), "element 1 is +Inf"},
		{"-Inf", wire.Float32Tensor([]int{1}, []float32{float32(math.Inf(-1))}), "element 0 is -Inf"},
		{"short data", wire.Float32Tensor([]int{3}, []float32{1, 2}), "data is 8 bytes, want 12 for 3 float32 elements"},
		{"long data", wire.Tensor{DType: wire.Uint8, Shape: []int{1}, Data: []byte{1, 2}}, "data is 2 bytes, want 1"},
		{"invalid dtype", wire.Tensor{Shape: []int{1}, Data: []byte{1}}, "dtype 0 is invalid"},
		{"unknown dtype", wire.Tensor{DType: 3, Shape: []int{1}, Data: []byte{1}}, "dtype 3 is invalid"},
		{"rank 0", wire.Tensor{DType: wire.Uint8, Data: []byte{1}}, "rank 0 is not in 1..8"},
		{"rank 9", uint8Tensor(1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "rank 9 is not in 1..8"},
		{"dim 0", wire.Tensor{DType: wire.Uint8, Shape: []int{2, 0}}, "dim 1 is 0, want >= 1"},
		{"too many elements", wire.Tensor{DType: wire.Uint8, Shape: []int{1 << 12, 1 << 12, 2}}, "more than 16777216 elements"},
		{"overflowing shape", wire.Tensor{DType: wire.Uint8, Shape: []int{1 << 40, 1 << 40}}, "more than 16777216 elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tensor.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestFloat32Tensor(t *testing.T) {
	shape := []int{2}
	tensor := wire.Float32Tensor(shape, []float32{1, -2})
	shape[0] = 5
	want := wire.Tensor{DType: wire.Float32, Shape: []int{2}, Data: []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}}
	checkEqual(t, "Float32Tensor", tensor, want)
}

func TestAppendFloat32s(t *testing.T) {
	u8 := wire.Tensor{DType: wire.Uint8, Shape: []int{4}, Data: []byte{0, 1, 128, 255}}
	scale := float32(1.0 / 255.0)
	f32 := wire.Float32Tensor([]int{len(edgeFloats)}, edgeFloats)
	scaled := make([]float32, len(edgeFloats))
	for i, v := range edgeFloats {
		scaled[i] = v * 0.5
	}
	tests := []struct {
		name   string
		tensor wire.Tensor
		dst    []float32
		scale  float32
		want   []float32
	}{
		{"uint8 scaled", u8, nil, scale, []float32{0, 1 * scale, 128 * scale, 255 * scale}},
		{"uint8 scale 1", u8, nil, 1, []float32{0, 1, 128, 255}},
		{"uint8 scale 0 is 1", u8, nil, 0, []float32{0, 1, 128, 255}},
		{"uint8 appends", u8, []float32{-1}, 2, []float32{-1, 0, 2, 256, 510}},
		{"float32 passthrough", f32, nil, 1, edgeFloats},
		{"float32 scale 0 is 1", f32, nil, 0, edgeFloats},
		{"float32 scaled", f32, []float32{}, 0.5, scaled},
		{"float32 not a multiple of 4", wire.Float32Tensor([]int{7}, edgeFloats[:7]), nil, 1, edgeFloats[:7]},
		{"float32 scaled not a multiple of 4", wire.Float32Tensor([]int{7}, edgeFloats[:7]), nil, 0.5, scaled[:7]},
		{"invalid dtype", wire.Tensor{Data: []byte{1, 2}}, []float32{7}, 1, []float32{7}},
		{"partial element ignored", wire.Tensor{DType: wire.Float32, Data: []byte{0, 0, 0x80, 0x3f, 1}}, nil, 1, []float32{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.tensor.AppendFloat32s(tt.dst, tt.scale)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d elements %v, want %d %v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				// Compare bits: -0 must stay -0.
				if math.Float32bits(got[i]) != math.Float32bits(tt.want[i]) {
					t.Errorf("element %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestAppendFloat32sDoesNotAllocate(t *testing.T) {
	u8 := uint8Tensor(1, 1, 28, 28)
	f32 := float32Tensor(1, 32)
	dst := make([]float32, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		dst = u8.AppendFloat32s(dst[:0], 1.0/255)
		dst = f32.AppendFloat32s(dst[:0], 1)
		dst = f32.AppendFloat32s(dst[:0], 2)
	})
	if allocs != 0 {
		t.Errorf("AppendFloat32s allocated %v times into a large enough dst", allocs)
	}
}
