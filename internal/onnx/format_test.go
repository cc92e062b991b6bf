package onnx

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// withFormat is a model's bytes with its ir_version and its ai.onnx
// opset_import version set to ir and opset, every other field copied as
// it is: the fixture generator of the format tests. It writes what
// `m = onnx.load(p); m.ir_version = 14; onnx.save(m, q)` writes with
// Debian's python3-onnx (byte for byte on models/edge.onnx, and likewise
// for `m.opset_import[0].version = 26` on models/fog.onnx), without
// needing Python or an `onnx` release that knows IR version 14.
func withFormat(t testing.TB, b []byte, ir, opset int64) []byte {
	t.Helper()
	var out []byte
	err := eachField(b, func(num, wt int, v uint64, raw []byte) error {
		switch {
		case num == 1 && wt == wireVarint:
			v = uint64(ir)
		case num == 8 && wt == wireBytes:
			domain := ""
			if err := eachField(raw, func(n, w int, _ uint64, s []byte) error {
				if n == 1 && w == wireBytes {
					domain = string(s)
				}
				return nil
			}); err != nil {
				return err
			}
			if domain == "" || domain == "ai.onnx" {
				// The default domain, written without its name as
				// torch and onnx write it.
				raw = binary.AppendUvarint([]byte{2<<3 | wireVarint}, uint64(opset))
			}
		}
		out = binary.AppendUvarint(out, uint64(num<<3|wt))
		switch wt {
		case wireVarint:
			out = binary.AppendUvarint(out, v)
		case wireBytes:
			out = binary.AppendUvarint(out, uint64(len(raw)))
			out = append(out, raw...)
		default:
			out = append(out, raw...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadHeader(t *testing.T) {
	for _, name := range []string{"edge", "fog", "cloud"} {
		b, err := os.ReadFile(filepath.Join("../../models", name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := ReadHeader(b)
		if err != nil || h != (Header{IRVersion: 7, Opset: 13}) {
			t.Errorf("%s: %+v, %v; want IR 7, opset 13 (train.py exports opset 13)", name, h, err)
		}
		h, err = ReadHeader(withFormat(t, b, 14, 26))
		if err != nil || h != (Header{IRVersion: 14, Opset: 26}) {
			t.Errorf("%s rewritten: %+v, %v", name, h, err)
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "no ir_version"},
		{"text", []byte("hello"), "field"},
		{"truncated length", []byte{0x08, 0x07, 0x3a, 0x7f, 0x01}, "field 7: 127 bytes needed at byte 4, 1 remain"},
		{"group", []byte{0x0b}, "unsupported wire type 3"},
		{"varint overflow", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "bad varint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadHeader(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, name := range []string{"fog", "cloud"} {
		b, err := os.ReadFile(filepath.Join("../../models", name+".onnx"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x0e, 0x42, 0x02, 0x10, 0x1a})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(b)
		if err != nil {
			return
		}
		// What ReadHeader read is what the model says: rewritten, it
		// reads back as written.
		got, err := ReadHeader(withFormat(t, b, h.IRVersion+1, 26))
		if err != nil || got.IRVersion != h.IRVersion+1 || (got.Opset != 26 && got.Opset != h.Opset) {
			t.Errorf("read %+v; rewritten with IR %d and opset 26: %+v, %v", h, h.IRVersion+1, got, err)
		}
	})
}

// TestFormatRange loads the fog model rewritten just inside and just
// outside each bound of the documented range with the installed ONNX
// Runtime: inside loads, outside is refused naming the versions, the
// range and the conversion. It fails when the installed release's range
// moves (a new ONNX Runtime pinned without updating the constants and
// docs/inference.md).
func TestFormatRange(t *testing.T) {
	if _, err := Init(""); err != nil {
		t.Fatal(err)
	}
	if v := Version(); v != RuntimeVersion {
		t.Fatalf("ONNX Runtime %s loaded, the range is measured for %s (scripts/install-ort.sh installs it)", v, RuntimeVersion)
	}
	fog, err := os.ReadFile("../../models/fog.onnx")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rangeText := "ONNX Runtime 1.24.3 loads IR versions up to 13 and ai.onnx opsets 7 to 25: convert it with python3 -c "
	for _, tc := range []struct {
		name      string
		ir, opset int64
		wants     []string // nil: loads
	}{
		{"oldest IR", 3, 13, nil},
		{"newest IR", MaxIRVersion, 13, nil},
		{"IR 14", MaxIRVersion + 1, 13, []string{"has ONNX IR version 14 and ai.onnx opset 13; " + rangeText,
			"m.ir_version = 13; onnx.save(m, ", "Unsupported model IR version: 14, max supported IR version: 13"}},
		{"oldest opset", MinOpset, 13, nil},
		{"newest opset", 13, MaxOpset, nil},
		{"opset 26", 13, MaxOpset + 1, []string{"has ONNX IR version 13 and ai.onnx opset 26; " + rangeText,
			"v.convert_version(onnx.load(", "), 25); m.ir_version = min(m.ir_version, 13)", "Opset 26 is under development"}},
		{"opset 6", 13, MinOpset - 1, []string{"ai.onnx opset 6; " + rangeText, "), 13); m.ir_version"}},
		{"IR 14 and opset 26", 14, 26, []string{"has ONNX IR version 14 and ai.onnx opset 26; ", "convert_version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, regexp.MustCompile(`\W+`).ReplaceAllString(tc.name, "-")+".onnx")
			if err := os.WriteFile(path, withFormat(t, fog, tc.ir, tc.opset), 0o644); err != nil {
				t.Fatal(err)
			}
			info, err := ReadModelInfo(path)
			if tc.wants == nil {
				if err != nil || len(info.Outputs) != 2 {
					t.Fatalf("IR %d opset %d does not load: %v", tc.ir, tc.opset, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("IR %d opset %d loads; the documented range is out of date", tc.ir, tc.opset)
			}
			for _, w := range append(tc.wants, "model file "+path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestRuntimeVersionIsInstalled: the install script installs the release
// the range is measured for.
func TestRuntimeVersionIsInstalled(t *testing.T) {
	b, err := os.ReadFile("../../scripts/install-ort.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nVERSION="+RuntimeVersion+"\n") {
		t.Errorf("scripts/install-ort.sh does not install ONNX Runtime %s", RuntimeVersion)
	}
}
