// Package yamlcheck checks a YAML document against the Go type it will be
// decoded into, strictly: every key the type has no field for and every
// value of the wrong kind is reported at once, each with its YAML path,
// its line and, for a misspelt key, the nearest field name. It stands in
// for yaml.v3's KnownFields and type errors, which name Go types and no
// path. It only checks; decoding, defaults and validation stay with the
// caller.
package yamlcheck

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/suggest"
)

// ErrEmpty is returned by Parse for input with no YAML document in it.
var ErrEmpty = errors.New("empty document")

// Parse reads the first YAML document in b and checks it against t (see
// Check). A document that reads but fails the check is returned with the
// check's error, so a caller may still decode it to report more problems.
func Parse(b []byte, t reflect.Type) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrEmpty
		}
		return nil, err
	}
	return &doc, Check(&doc, t)
}

// Check walks a YAML document against the Go type t it decodes into and
// reports, at once, every key that type has no field for and every value
// of the wrong kind, each with its YAML path and line:
//
//	tiers[0].exit.treshold: unknown field (line 12); did you mean threshold?
//	kafka.partitions: "four" is not a whole number (line 3)
//
// It stands in for yaml.v3's KnownFields and type errors, which name Go
// types ("field treshold not found in type pipeline.Exit") and no path.
//
// A value of a type with its own UnmarshalYAML or UnmarshalText is
// checked by decoding it; a struct mapping is walked field by field.
func Check(doc *yaml.Node, t reflect.Type) error {
	c := checker{seen: map[checked]bool{}}
	c.walk(doc, t, "")
	return errors.Join(c.errs...)
}

type checker struct {
	errs []error
	// seen stops aliases from being walked again (and a YAML bomb of
	// aliases from taking exponential time).
	seen map[checked]bool
}

type checked struct {
	n *yaml.Node
	t reflect.Type
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (c *checker) bad(n *yaml.Node, path, format string, args ...any) {
	if path == "" {
		path = "(top level)"
	}
	c.errs = append(c.errs, fmt.Errorf("%s: %s (line %d)", path, fmt.Sprintf(format, args...), n.Line))
}

func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.DocumentNode {
		for _, d := range n.Content {
			c.walk(d, t, path)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if c.seen[checked{n, t}] {
		return
	}
	c.seen[checked{n, t}] = true
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves the value as it is
	}
	custom := reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textType)
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode || n.Decode(new(time.Duration)) != nil {
			c.bad(n, path, "%s is not a duration like 500ms, 10s or 1m", describe(n))
		}
	case custom && (t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode):
		err := n.Decode(reflect.New(t).Interface())
		var te *yaml.TypeError
		switch {
		case err == nil:
		case errors.As(err, &te) && t.Kind() == reflect.Struct:
			c.bad(n, path, "%s is not a mapping", describe(n))
		case errors.As(err, &te):
			c.bad(n, path, "%s is not %s", describe(n), kindName(t))
		default:
			c.bad(n, path, "%s", yamlMessage(err))
		}
	case t.Kind() == reflect.Struct:
		c.walkStruct(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.bad(n, path, "%s is not a list", describe(n))
			return
		}
		for i, e := range n.Content {
			c.walk(e, t.Elem(), fmt.Sprintf("%s[%d]%s", path, i, label(e)))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.bad(n, path, "%s is not a mapping", describe(n))
			return
		}
		lines := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				c.bad(k, path, "keys must be plain names")
				continue
			}
			at := fmt.Sprintf("%s[%s]", path, pathKey(k.Value))
			if c.once(k, at, lines) {
				c.walk(n.Content[i+1], t.Elem(), at)
			}
		}
	default:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			c.bad(n, path, "%s is not %s", describe(n), kindName(t))
		}
	}
}

// labelKeys name a list's element in paths, as validation does:
// tiers[0] (edge), devices[2] (dev-3), kafka.embedded_users[0] (svc).
var labelKeys = []string{"name", "id", "username"}

// label is " (NAME)" for a list element that is a mapping with one of
// labelKeys set to a plain value, "" otherwise.
func label(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for _, key := range labelKeys {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Value == key && v.Kind == yaml.ScalarNode && v.Value != "" {
				return " (" + v.Value + ")"
			}
		}
	}
	return ""
}

func (c *checker) walkStruct(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.bad(n, path, "%s is not a mapping", describe(n))
		return
	}
	fields := yamlFields(t)
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.bad(k, path, "keys must be plain names")
			continue
		}
		if k.Value == "<<" { // a merge: its keys are this mapping's
			c.walkMerge(v, t, path)
			continue
		}
		at := pathKey(k.Value)
		if path != "" {
			at = path + "." + at
		}
		if !c.once(k, at, lines) {
			continue
		}
		ft, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			err := fmt.Errorf("%s: unknown field (line %d)", at, k.Line)
			if near := suggest.Nearest(k.Value, names); near != "" {
				err = fmt.Errorf("%w; did you mean %s?", err, near)
			}
			c.errs = append(c.errs, err)
			continue
		}
		c.walk(v, ft, at)
	}
}

// once reports whether key k of a mapping is its first with that name,
// and reports it otherwise; lines holds the mapping's keys seen so far.
func (c *checker) once(k *yaml.Node, at string, lines map[string]int) bool {
	if first, ok := lines[k.Value]; ok {
		c.bad(k, at, "set twice (first at line %d)", first)
		return false
	}
	lines[k.Value] = k.Line
	return true
}

func (c *checker) walkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			c.walk(m, t, path)
		}
		return
	}
	c.walk(v, t, path)
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// pathKey is a key as a path shows it: as written when it is a plain
// name, else quoted (so a key like ": x" cannot blur the path).
func pathKey(k string) string {
	if plainKeyRE.MatchString(k) {
		return k
	}
	return strconv.Quote(k)
}

// yamlFields maps the YAML keys of struct t, inline structs included, to
// their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue // yaml.v3 inlines an embedded struct even when unexported
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
			continue
		case strings.Contains(opts, "inline"):
			for k, v := range yamlFields(f.Type) {
				fields[k] = v
			}
			continue
		case name == "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// describe quotes a scalar, or names the kind of a collection.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("a whole number (%d bits)", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number at least 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// yamlMessage is a yaml.v3 error without its "yaml: " and line prefixes.
func yamlMessage(err error) string {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			msg = after
		}
	}
	return msg
}
