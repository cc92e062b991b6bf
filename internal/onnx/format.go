package onnx

import (
	"errors"
	"fmt"
	"os"
)

// The model formats the ONNX Runtime release that ddnn installs
// (scripts/install-ort.sh) loads, measured on that release (TestFormatRange
// loads models just inside and just outside each bound). ONNX Runtime
// refuses a newer IR version as a whole ("Unsupported model IR version:
// 14, max supported IR version: 13"), and an ai.onnx opset it does not
// know, which newer `onnx` releases write by default.
const (
	// RuntimeVersion is the ONNX Runtime release install-ort.sh installs.
	RuntimeVersion = "1.24.3"
	// MaxIRVersion is the newest ONNX IR version RuntimeVersion loads.
	MaxIRVersion = 13
	// MinOpset and MaxOpset bound the ai.onnx opsets RuntimeVersion
	// loads (its kernels start at opset 7).
	MinOpset = 7
	MaxOpset = 25
	// exportOpset is the opset the sample models are exported with,
	// suggested for a model whose opset is too old.
	exportOpset = 13
)

// Header is what a model file says about its format.
type Header struct {
	// IRVersion is the ONNX IR version (ModelProto.ir_version).
	IRVersion int64
	// Opset is the ai.onnx opset imported (0 when none is).
	Opset int64
}

// ReadHeader reads the format of an ONNX model from its bytes: the
// ir_version (field 1) and the default domain's entry of opset_import
// (field 8) of the ModelProto, skipping every other field. It decodes
// nothing else, so it reads models ONNX Runtime refuses.
func ReadHeader(b []byte) (Header, error) {
	var h Header
	var haveIR bool
	err := eachField(b, func(num int, wt int, v uint64, sub []byte) error {
		switch {
		case num == 1 && wt == wireVarint:
			h.IRVersion, haveIR = int64(v), true
		case num == 8 && wt == wireBytes:
			domain, version := "", int64(0)
			err := eachField(sub, func(num int, wt int, v uint64, s []byte) error {
				switch {
				case num == 1 && wt == wireBytes:
					domain = string(s)
				case num == 2 && wt == wireVarint:
					version = int64(v)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("opset_import: %w", err)
			}
			if domain == "" || domain == "ai.onnx" {
				h.Opset = version
			}
		}
		return nil
	})
	if err != nil {
		return h, err
	}
	if !haveIR {
		return h, errors.New("no ir_version: not an ONNX model")
	}
	return h, nil
}

// Protocol buffer wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// eachField calls fn with each field of the protocol buffer message b:
// its number, wire type, and value (varints) or bytes (the contents of a
// length-delimited field, the 4 or 8 bytes of a fixed one).
func eachField(b []byte, fn func(num, wt int, v uint64, sub []byte) error) error {
	for off := 0; off < len(b); {
		key, n := uvarint(b[off:])
		if n <= 0 {
			return fmt.Errorf("bad field key at byte %d", off)
		}
		off += n
		num, wt := int(key>>3), int(key&7)
		if num == 0 {
			return fmt.Errorf("field number 0 at byte %d", off-n)
		}
		var v uint64
		var sub []byte
		switch wt {
		case wireVarint:
			if v, n = uvarint(b[off:]); n <= 0 {
				return fmt.Errorf("field %d: bad varint at byte %d", num, off)
			}
			off += n
		case wireFixed64, wireFixed32:
			size := 8
			if wt == wireFixed32 {
				size = 4
			}
			if len(b)-off < size {
				return fmt.Errorf("field %d: %d bytes needed at byte %d, %d remain", num, size, off, len(b)-off)
			}
			sub = b[off : off+size]
			off += size
		case wireBytes:
			l, n := uvarint(b[off:])
			if n <= 0 {
				return fmt.Errorf("field %d: bad length at byte %d", num, off)
			}
			off += n
			if l > uint64(len(b)-off) {
				return fmt.Errorf("field %d: %d bytes needed at byte %d, %d remain", num, l, off, len(b)-off)
			}
			sub = b[off : off+int(l)]
			off += int(l)
		default:
			return fmt.Errorf("field %d: unsupported wire type %d at byte %d", num, wt, off-n)
		}
		if err := fn(num, wt, v, sub); err != nil {
			return err
		}
	}
	return nil
}

// uvarint decodes a protocol buffer varint; n <= 0 when b holds none.
func uvarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1 // overflows 64 bits
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// formatError explains a model ONNX Runtime refused when its format is
// outside what RuntimeVersion loads: the versions it has, the range, and
// the one-line conversion; nil when the format is within the range (the
// refusal has another cause) or cannot be read.
func formatError(path string, loadErr error) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	h, err := ReadHeader(b)
	if err != nil {
		return nil
	}
	irBad := h.IRVersion > MaxIRVersion
	opsetBad := h.Opset != 0 && (h.Opset < MinOpset || h.Opset > MaxOpset)
	if !irBad && !opsetBad {
		return nil
	}
	convert := fmt.Sprintf(`python3 -c "import onnx; m = onnx.load('%s'); m.ir_version = %d; onnx.save(m, '%s')"`, path, MaxIRVersion, path)
	if opsetBad {
		target := int64(MaxOpset)
		if h.Opset < MinOpset {
			target = exportOpset
		}
		convert = fmt.Sprintf(`python3 -c "import onnx, onnx.version_converter as v; m = v.convert_version(onnx.load('%s'), %d); m.ir_version = min(m.ir_version, %d); onnx.save(m, '%s')"`,
			path, target, MaxIRVersion, path)
	}
	loaded := Version()
	return fmt.Errorf("model file %s has ONNX IR version %d and ai.onnx opset %d; ONNX Runtime %s loads IR versions up to %d and ai.onnx opsets %d to %d: convert it with %s, or export it again for those versions (onnxruntime %s: %w)",
		path, h.IRVersion, h.Opset, RuntimeVersion, MaxIRVersion, MinOpset, MaxOpset, convert, loaded, loadErr)
}
