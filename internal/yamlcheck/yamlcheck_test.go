package yamlcheck

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Latency string `yaml:"latency"`
}

type doc struct {
	Name   string        `yaml:"name"`
	Count  int32         `yaml:"count"`
	Wait   time.Duration `yaml:"wait"`
	Items  []item        `yaml:"items"`
	Labels map[string]int
	inner  `yaml:",inline"` // unexported embedded: yaml.v3 inlines it all the same
}

type item struct {
	Name      string  `yaml:"name"`
	ID        string  `yaml:"id"`
	Threshold float64 `yaml:"threshold"`
}

// Every problem is reported at once with its path and line, never a Go
// type; a misspelt key names the nearest field.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"valid", "name: a\ncount: 3\nwait: 2s\nitems: [{threshold: 0.5}]\nlabels: {x: 1}\nlatency: 5ms\n", nil},
		{"many problems", "nmae: a\ncount: four\nwait: soon\nitems:\n  - treshold: 1\nlabels: {x: y}\nlatncy: 1ms\n", []string{
			"nmae: unknown field (line 1); did you mean name?",
			`count: "four" is not a whole number (32 bits) (line 2)`,
			`wait: "soon" is not a duration like 500ms, 10s or 1m (line 3)`,
			"items[0].treshold: unknown field (line 5); did you mean threshold?",
			`labels[x]: "y" is not a whole number (64 bits) (line 6)`,
			"latncy: unknown field (line 7); did you mean latency?",
		}},
		{"elements labelled as validation does", "items:\n  - {name: edge, treshold: 1}\n  - {id: dev-1, treshold: 1}\n  - {name: '', treshold: 1}\n", []string{
			"items[0] (edge).treshold: unknown field (line 2); did you mean threshold?",
			"items[1] (dev-1).treshold: unknown field (line 3); did you mean threshold?",
			"items[2].treshold: unknown field (line 4); did you mean threshold?",
		}},
		{"set twice", "name: a\nname: b\n", []string{"name: set twice (first at line 1) (line 2)"}},
		{"wrong kind", "items: {threshold: 1}\n", []string{"items: a mapping is not a list (line 1)"}},
		{"not a mapping", "- a\n", []string{"(top level): a list is not a mapping (line 1)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), reflect.TypeFor[doc]())
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
			if strings.Contains(err.Error(), "yamlcheck.") {
				t.Errorf("error names a Go type: %v", err)
			}
		})
	}
}

// Parse tells an empty input from a syntax error and returns the document
// with the check's error so the caller can decode what is valid.
func TestParse(t *testing.T) {
	if _, err := Parse(nil, reflect.TypeFor[doc]()); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty input: %v, want ErrEmpty", err)
	}
	if n, err := Parse([]byte("items: [\n"), reflect.TypeFor[doc]()); n != nil || err == nil || errors.Is(err, ErrEmpty) {
		t.Errorf("syntax error: %v, %v", n, err)
	}
	n, err := Parse([]byte("name: a\nnmae: b\n"), reflect.TypeFor[doc]())
	if n == nil || err == nil {
		t.Fatalf("got %v, %v; want the document and an error", n, err)
	}
	var d doc
	if err := n.Decode(&d); err != nil || d.Name != "a" {
		t.Errorf("decoded %+v, %v", d, err)
	}
}
