package wire

import (
	"errors"
	"fmt"
	"strings"
)

// ModelVersion names the model that made a decision: a prefix of its
// file's sha256 (hex) and the tier's optional version label (the
// pipeline's tiers[].version). Its compact form, which an inference
// function's answer header and the hops header of a record carry, is
//
//	<sha>            e.g. 3f9a1c0b2d4e
//	<sha>@<version>  e.g. 3f9a1c0b2d4e@v2
//
// written by String and read by ParseModelVersion, the only code that
// does either. In JSON (a result's "model") it is {"sha":…,"version":…},
// version left out when empty.
type ModelVersion struct {
	SHA     string `json:"sha"`
	Version string `json:"version,omitempty"`
}

// MaxModelVersionLen bounds a version label; MaxModelSHALen a sha256
// prefix (the whole digest in hex). The compact form of a ModelVersion
// is at most MaxModelSHALen+1+MaxModelVersionLen bytes.
const (
	MaxModelVersionLen = 32
	MaxModelSHALen     = 64
)

// IsZero reports whether v names no model (the replica did not say).
func (v ModelVersion) IsZero() bool { return v.SHA == "" && v.Version == "" }

// String is v's compact form: sha, or sha@version.
func (v ModelVersion) String() string {
	if v.Version == "" {
		return v.SHA
	}
	return v.SHA + "@" + v.Version
}

// ParseModelVersion reads the compact form (String); "" is the zero
// ModelVersion. An error says which part does not read.
func ParseModelVersion(s string) (ModelVersion, error) {
	if s == "" {
		return ModelVersion{}, nil
	}
	sha, version, labeled := strings.Cut(s, "@")
	v := ModelVersion{SHA: sha, Version: version}
	var errs []error
	if err := checkModelSHA(sha); err != nil {
		errs = append(errs, err)
	}
	if labeled {
		if err := CheckModelVersionLabel(version); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return ModelVersion{}, fmt.Errorf("model version %q: %w", s, errors.Join(errs...))
	}
	return v, nil
}

func checkModelSHA(sha string) error {
	if sha == "" || len(sha) > MaxModelSHALen {
		return fmt.Errorf("sha %q must be 1 to %d hex digits", sha, MaxModelSHALen)
	}
	for i := 0; i < len(sha); i++ {
		if c := sha[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("sha %q must be lowercase hex digits", sha)
		}
	}
	return nil
}

// CheckModelVersionLabel checks a version label: 1 to MaxModelVersionLen
// letters, digits, '.', '_' or '-', starting with a letter or digit (so
// that it needs no escaping in a header, a URL or a table).
func CheckModelVersionLabel(label string) error {
	if label == "" || len(label) > MaxModelVersionLen {
		return fmt.Errorf("version %q must be 1 to %d characters", label, MaxModelVersionLen)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		alnum := '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("version %q must be letters, digits, '.', '_' or '-', starting with a letter or digit", label)
		}
	}
	return nil
}

// minAcceptSHALen is the shortest sha256 prefix an accepts entry may name
// a model by: shorter ones would match too many.
const minAcceptSHALen = 8

// Matches reports whether ref names v: ref is v's version label, or a
// prefix (of at least 8 hex digits) of its sha256, or v's sha256 prefix
// is a prefix of ref (ref names the whole digest). A pipeline's
// tiers[].accepts lists such refs.
func (v ModelVersion) Matches(ref string) bool {
	if ref == "" || v.IsZero() {
		return false
	}
	if ref == v.Version {
		return true
	}
	if len(ref) < minAcceptSHALen || len(v.SHA) < minAcceptSHALen {
		return false
	}
	return strings.HasPrefix(v.SHA, ref) || strings.HasPrefix(ref, v.SHA)
}

// CheckModelRef checks an accepts entry: a version label
// (CheckModelVersionLabel), or a sha256 prefix of at least 8 hex digits.
func CheckModelRef(ref string) error {
	if CheckModelVersionLabel(ref) == nil {
		return nil
	}
	if len(ref) >= minAcceptSHALen && checkModelSHA(ref) == nil {
		return nil
	}
	return fmt.Errorf("%q names no model: want a version label (letters, digits, '.', '_' or '-', at most %d) or a sha256 prefix of %d to %d hex digits", ref, MaxModelVersionLen, minAcceptSHALen, MaxModelSHALen)
}
