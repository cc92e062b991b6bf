package wire_test

import (
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestModelVersionCompactForm: String and ParseModelVersion are each
// other's inverse, with and without a label, and "" is no model.
func TestModelVersionCompactForm(t *testing.T) {
	for _, tc := range []struct {
		compact string
		v       wire.ModelVersion
	}{
		{"", wire.ModelVersion{}},
		{"3f9a1c0b2d4e", wire.ModelVersion{SHA: "3f9a1c0b2d4e"}},
		{"3f9a1c0b2d4e@v2", wire.ModelVersion{SHA: "3f9a1c0b2d4e", Version: "v2"}},
		{"3f9a1c0b2d4e@2026-12.retrain_3", wire.ModelVersion{SHA: "3f9a1c0b2d4e", Version: "2026-12.retrain_3"}},
	} {
		got, err := wire.ParseModelVersion(tc.compact)
		if err != nil || got != tc.v {
			t.Errorf("ParseModelVersion(%q) = %+v, %v; want %+v", tc.compact, got, err, tc.v)
		}
		if s := tc.v.String(); s != tc.compact {
			t.Errorf("%+v.String() = %q, want %q", tc.v, s, tc.compact)
		}
		if tc.v.IsZero() != (tc.compact == "") {
			t.Errorf("%+v.IsZero() = %v", tc.v, tc.v.IsZero())
		}
	}
}

// TestParseModelVersionRefuses: what is not a sha prefix and a safe label
// is an error naming the part.
func TestParseModelVersionRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"@v2", `sha "" must be 1 to 64 hex digits`},
		{"3F9A", `sha "3F9A" must be lowercase hex digits`},
		{strings.Repeat("a", 65), "must be 1 to 64 hex digits"},
		{"3f9a@", `version "" must be 1 to 32 characters`},
		{"3f9a@" + strings.Repeat("v", 33), "must be 1 to 32 characters"},
		{"3f9a@v 2", `version "v 2" must be letters, digits`},
		{"3f9a@v2;x", "must be letters, digits"},
		{"3f9a@v2,x", "must be letters, digits"},
		{"3f9a@-v2", "starting with a letter or digit"},
		{"3f9a@v2@v3", "must be letters, digits"},
	} {
		_, err := wire.ParseModelVersion(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseModelVersion(%q): err %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseModelVersion: what the parser accepts (from a replica's
// answer header or a record's hops) writes back as it was read, and holds
// nothing a header, a hop's separators (',' ';') or a URL path would need
// escaped.
func FuzzParseModelVersion(f *testing.F) {
	for _, s := range []string{"", "3f9a1c0b2d4e", "3f9a1c0b2d4e@v2", "@", "3f@v2@x", "3f@v%202", "3f@v,2;x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := wire.ParseModelVersion(s)
		if err != nil {
			return
		}
		if v.String() != s {
			t.Fatalf("ParseModelVersion(%q).String() = %q", s, v.String())
		}
		if len(s) > wire.MaxModelSHALen+1+wire.MaxModelVersionLen || strings.ContainsAny(s, ",;%/ \t\r\n") {
			t.Fatalf("accepted %q", s)
		}
	})
}

// TestModelVersionMatches: an accepts entry names a model by its label or
// by a sha256 prefix long enough to be specific, in either direction.
func TestModelVersionMatches(t *testing.T) {
	v := wire.ModelVersion{SHA: "3f9a1c0b2d4e", Version: "v2"}
	for _, tc := range []struct {
		ref  string
		want bool
	}{
		{"v2", true},
		{"v3", false},
		{"3f9a1c0b", true},
		{"3f9a1c0b2d4e", true},
		{"3f9a1c0b2d4e0011223344556677889900aabbccddeeff00112233445566778899", true},
		{"3f9a1c0", false}, // too short to be specific
		{"3f9a1c0c", false},
		{"", false},
	} {
		if got := v.Matches(tc.ref); got != tc.want {
			t.Errorf("%v.Matches(%q) = %v, want %v", v, tc.ref, got, tc.want)
		}
	}
	if (wire.ModelVersion{}).Matches("v2") {
		t.Error("the zero ModelVersion matched a label")
	}
	for _, ok := range []string{"v2", "3f9a1c0b", "2026-12.retrain_3"} {
		if err := wire.CheckModelRef(ok); err != nil {
			t.Errorf("CheckModelRef(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-v2", "v 2", "a;b"} {
		if err := wire.CheckModelRef(bad); err == nil {
			t.Errorf("CheckModelRef(%q) accepted it", bad)
		}
	}
}
