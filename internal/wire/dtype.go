package wire

import (
	"fmt"
	"strconv"
)

// DType is a tensor element type.
type DType uint8

// The tensor element types. Their values are part of the binary encoding.
const (
	DTypeInvalid DType = 0
	Float32      DType = 1
	Uint8        DType = 2
)

// ParseDType returns the DType named s: "float32" or "uint8".
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32":
		return Float32, nil
	case "uint8":
		return Uint8, nil
	}
	return DTypeInvalid, fmt.Errorf("unknown dtype %q: want \"float32\" or \"uint8\"", s)
}

// String returns the name of d: "float32", "uint8", "invalid" for
// DTypeInvalid, and "DType(n)" for other values.
func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Uint8:
		return "uint8"
	case DTypeInvalid:
		return "invalid"
	}
	return "DType(" + strconv.Itoa(int(d)) + ")"
}

// Size returns the number of bytes per element: 4 for Float32, 1 for Uint8
// and 0 for anything else.
func (d DType) Size() int {
	switch d {
	case Float32:
		return 4
	case Uint8:
		return 1
	}
	return 0
}

func (d DType) valid() bool { return d == Float32 || d == Uint8 }

// MarshalText returns the name of d. It fails for an invalid d, so that
// what it writes can always be read back.
func (d DType) MarshalText() ([]byte, error) {
	if !d.valid() {
		return nil, fmt.Errorf("dtype %d is invalid", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText sets d from its name, as ParseDType does.
func (d *DType) UnmarshalText(text []byte) error {
	v, err := ParseDType(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
