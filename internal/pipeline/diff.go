package pipeline

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Difference is one setting that differs between two readings of a
// pipeline: its YAML path and its old and new values as FormatSetting
// writes them.
type Difference struct {
	Path     string
	Old, New string
}

// String is "path: old -> new".
func (d Difference) String() string { return d.Path + ": " + d.Old + " -> " + d.New }

// Diff lists the settings that differ between old and new, two values of
// one YAML-tagged type (a Pipeline or one of its sections), by YAML path
// under path: structs field by field (inline ones under the same path),
// pointers by what they point to, lists of sections element by element
// (named as validation names them: tiers[0] (edge)), lists of sections of
// different lengths and anything else as a whole. An empty list and no
// list are the same setting.
func Diff(path string, old, new any) []Difference {
	var out []Difference
	diff(path, reflect.ValueOf(old), reflect.ValueOf(new), &out)
	return out
}

func diff(path string, a, b reflect.Value, out *[]Difference) {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, Difference{Path: path, Old: FormatSetting(a.Interface()), New: FormatSetting(b.Interface())})
			}
			return
		}
		diff(path, a.Elem(), b.Elem(), out)
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			key, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "-" || !f.IsExported() {
				continue
			}
			if key == "" {
				key = strings.ToLower(f.Name)
			}
			sub := path
			if opts != "inline" {
				sub = joinPath(path, key)
			}
			diff(sub, a.Field(i), b.Field(i), out)
		}
	case reflect.Slice:
		if k := a.Type().Elem().Kind(); k != reflect.Struct && k != reflect.Pointer {
			leaf(path, a, b, out)
			return
		}
		if a.Len() != b.Len() {
			*out = append(*out, Difference{Path: path, Old: fmt.Sprintf("%d entries", a.Len()), New: fmt.Sprintf("%d entries", b.Len())})
			return
		}
		for i := range a.Len() {
			diff(element(path, i, a.Index(i)), a.Index(i), b.Index(i), out)
		}
	default:
		leaf(path, a, b, out)
	}
}

// leaf appends the setting at path when a and b differ.
func leaf(path string, a, b reflect.Value, out *[]Difference) {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return
	}
	if a.Kind() == reflect.Slice || a.Kind() == reflect.Map {
		if a.Len() == 0 && b.Len() == 0 {
			return
		}
	}
	*out = append(*out, Difference{Path: path, Old: FormatSetting(a.Interface()), New: FormatSetting(b.Interface())})
}

// element is the path of a list's element i: with its name, for the
// sections that have one (a tier, a site).
func element(path string, i int, v reflect.Value) string {
	if v.Kind() == reflect.Struct {
		if n := v.FieldByName("Name"); n.IsValid() && n.Kind() == reflect.String {
			return fmt.Sprintf("%s[%d] (%s)", path, i, n.String())
		}
	}
	return fmt.Sprintf("%s[%d]", path, i)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// FormatSetting writes a setting's value as a plan or a reload log shows
// it: what a pointer points to ("unset" for none), durations as 1s, an
// empty string as "", lists as [a, b].
func FormatSetting(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "unset"
		}
		return FormatSetting(rv.Elem().Interface())
	}
	switch v := v.(type) {
	case time.Duration:
		return v.String()
	case string:
		if v == "" {
			return `""`
		}
		return v
	}
	if rv.Kind() == reflect.Slice {
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = FormatSetting(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}
