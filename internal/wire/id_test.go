package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestCheckID(t *testing.T) {
	for _, tc := range []struct {
		name, v, want string // want "" means valid
	}{
		{"hex", "0123456789abcdef0123456789abcdef", ""},
		{"every allowed byte", "azAZ09-_.:@/+=", ""},
		{"at the limit", strings.Repeat("x", 128), ""},
		{"empty", "", "id: empty"},
		{"over the limit", strings.Repeat("x", 129), "id: 129 bytes, over the limit of 128"},
		{"space", "cam 1", `id: byte 3 is ' ', not allowed`},
		{"newline", "a\nb", "id: byte 1 is 0x0a, not allowed"},
		{"non-ASCII", "café", "id: byte 3 is 0xc3, not allowed"},
		{"quote", `a"b`, `id: byte 1 is '"', not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wire.CheckID("id", tc.v)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ie *wire.IDError
			if !errors.As(err, &ie) || !strings.HasPrefix(err.Error(), tc.want) || !strings.Contains(err.Error(), wire.IDRule) {
				t.Fatalf("error %v; want an *IDError starting %q and stating the rule", err, tc.want)
			}
		})
	}
}

// FuzzCheckID compares CheckID with the rule as written, and checks that
// its error never echoes the id.
func FuzzCheckID(f *testing.F) {
	for _, s := range []string{"a", "dev-1", strings.Repeat("z", 128), strings.Repeat("z", 129), "a b", "\x00", "é", "a/b+c=d@e:f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ok := len(v) >= 1 && len(v) <= wire.MaxIDBytes
		for _, r := range v {
			if !(r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:@/+=", r))) {
				ok = false
			}
		}
		err := wire.CheckID("f", v)
		if (err == nil) != ok {
			t.Fatalf("CheckID(%q) = %v, rule says valid=%v", v, err, ok)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Fatalf("error of %d bytes: %q", len(err.Error()), err)
		}
	})
}

// TestDecodeDeviceRecord: a record a device produced is refused when the id
// or device it carries breaks the rule, naming where it came from; the
// fallback id is the caller's and passes unchecked.
func TestDecodeDeviceRecord(t *testing.T) {
	raw := &wire.RawInput{DType: wire.Uint8, Shape: []int{2}}
	long := strings.Repeat("x", 200)
	env := func(id, dev string) []byte {
		return []byte(`{"id":"` + id + `","device":"` + dev + `","tensor":{"dtype":"uint8","shape":[2],"data":[1,2]}}`)
	}
	h := func(kv ...string) []wire.Header {
		var hs []wire.Header
		for i := 0; i < len(kv); i += 2 {
			hs = append(hs, wire.Header{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return hs
	}
	fallback := "t.edge.in-0-" + strings.Repeat("9", 150)
	for _, tc := range []struct {
		name       string
		key, value []byte
		hs         []wire.Header
		want       string // "" means accepted
	}{
		{"raw with headers", nil, []byte{1, 2}, h(wire.HeaderID, "m-1", wire.HeaderDevice, "cam-1"), ""},
		{"raw, long fallback", nil, []byte{1, 2}, nil, ""},
		{"envelope", nil, env("m-1", "cam-1"), nil, ""},
		{"envelope id too long", nil, env(long, "cam-1"), nil, "record id (envelope): 200 bytes, over the limit of 128"},
		{"envelope device bad", nil, env("m-1", "cam 1"), nil, "record device (envelope): byte 3 is ' '"},
		{"header id bad", nil, []byte{1, 2}, h(wire.HeaderID, "a\tb"), "record id (ddnn-id header): byte 1 is 0x09"},
		{"header device too long", nil, []byte{1, 2}, h(wire.HeaderDevice, long), "record device (ddnn-device header): 200 bytes"},
		{"key as id bad", []byte("k ey"), []byte{1, 2}, nil, "record id (record key): byte 1 is ' '"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := wire.DecodeDeviceRecord(tc.key, tc.value, tc.hs, raw, fallback)
			if tc.want == "" {
				if err != nil || m.ID == "" {
					t.Fatalf("refused: %v (%+v)", err, m)
				}
				return
			}
			var ie *wire.IDError
			if !errors.As(err, &ie) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v; want an *IDError starting %q", err, tc.want)
			}
		})
	}
}
