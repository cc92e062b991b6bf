package wire_test

import (
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

const jsonTensor = `"tensor":{"dtype":"uint8","shape":[1],"data":[7]}`

var jsonTensorValue = wire.Tensor{DType: wire.Uint8, Shape: []int{1}, Data: []byte{7}}

func TestDecodeJSONStrings(t *testing.T) {
	tests := []struct {
		name string
		in   string // a JSON string, quotes included
		want string
	}{
		{"plain", `"a1"`, "a1"},
		{"empty", `""`, ""},
		{"escapes", `"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{"unicode escapes", `"\u00e9\u00C9\u2028x"`, "éÉ\u2028x"},
		{"surrogate pair", `"\ud83d\ude80"`, "🚀"},
		{"raw UTF-8", `"é🚀 ok"`, "é🚀 ok"},
		{"raw UTF-8 then escape", `"é\n"`, "é\n"},
		{"NUL escape", `"\u0000"`, "\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := `{"id":` + tt.in + `,` + jsonTensor + `}`
			got, err := wire.DecodeMessage(wire.JSON, []byte(in))
			if err != nil {
				t.Fatalf("DecodeMessage(%s): %v", in, err)
			}
			if got.ID != tt.want {
				t.Errorf("ID = %q, want %q", got.ID, tt.want)
			}
		})
	}
}

func TestDecodeJSONAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want wire.Message
	}{
		{"escaped field name", `{"\u0069d":"a",` + jsonTensor + `}`, wire.Message{ID: "a", Tensor: jsonTensorValue}},
		{"nulls are absent fields", `{"id":null,"device":null,"sent_at":null,"route":null,"hops":null,` + jsonTensor + `}`, wire.Message{Tensor: jsonTensorValue}},
		{"empty hops", `{"hops":[],` + jsonTensor + `}`, wire.Message{Tensor: jsonTensorValue}},
		{"zero time", `{"sent_at":"0001-01-01T00:00:00Z",` + jsonTensor + `}`, wire.Message{Tensor: jsonTensorValue}},
		{"spaces everywhere", " \t\r\n{ \"id\" : \"a\" , \"tensor\" : { \"dtype\" : \"uint8\" , \"shape\" : [ 1 ] , \"data\" : [ 7 ] } } \n", wire.Message{ID: "a", Tensor: jsonTensorValue}},
		{"data before shape", `{"tensor":{"dtype":"uint8","data":[7],"shape":[1]}}`, wire.Message{Tensor: jsonTensorValue}},
		{"uint8 -0", `{"tensor":{"dtype":"uint8","shape":[1],"data":[-0]}}`, wire.Message{Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{1}, Data: []byte{0}}}},
		{"float32 forms", `{"tensor":{"dtype":"float32","shape":[5],"data":[1,-2.5,3e1,4E-1,1e-50]}}`, wire.Message{Tensor: wire.Float32Tensor([]int{5}, []float32{1, -2.5, 30, 0.4, 0})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeMessage(wire.JSON, []byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeMessage: %v", err)
			}
			checkEqual(t, "DecodeMessage", got, tt.want)
		})
	}
}

func TestDecodeJSONSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"duplicate field", `{"id":"a","id":"b",` + jsonTensor + `}`, `duplicate field "id"`},
		{"duplicate tensor field", `{"tensor":{"dtype":"uint8","dtype":"uint8","shape":[1],"data":[7]}}`, `tensor: duplicate field "dtype"`},
		{"field names are case-sensitive", `{"ID":"a",` + jsonTensor + `}`, `unknown field "ID"`},
		{"single quotes", `{'id':'a'}`, `invalid character '\'' at start of value at offset 1`},
		{"missing colon", `{"id" "a"}`, `id: invalid character '"' after object name (expecting ':') at offset 6`},
		{"trailing comma", `{"id":"a",}`, `invalid character ',' at start of value at offset 9`},
		{"trailing comma in array", `{"tensor":{"dtype":"uint8","shape":[1,],"data":[7]}}`, `tensor: shape: invalid character ',' at start of value at offset 37`},
		{"string not closed", `{"id":"a`, `id: input ends at offset 8: unexpected EOF`},
		{"lone high surrogate", `{"id":"\ud83dx"}`, "id: invalid surrogate pair `\\ud83dx\"}` in string at offset 7"},
		{"lone low surrogate", `{"id":"\ude80"}`, "id: invalid surrogate pair `\\ude80\"}` in string at offset 7"},
		{"control character", "{\"id\":\"a\nb\"}", `id: invalid character '\n' in string (expecting non-control character) at offset 8`},
		{"invalid UTF-8", "{\"id\":\"a\xffb\"}", "id: invalid UTF-8 at offset 8"},
		{"invalid UTF-8 after escape", "{\"id\":\"\\n\xff\"}", "id: invalid UTF-8 at offset 9"},
		{"invalid escape", `{"id":"\x41"}`, "id: invalid escape sequence `\\x` in string at offset 7"},
		{"short unicode escape", `{"id":"\u12"}`, "id: invalid escape sequence `\\u12\"}` in string at offset 7"},
		{"id not a string", `{"id":7}`, `id: want a string at offset 6, got a number`},
		{"exit not a bool", `{"decisions":[{"exit":"yes"}]}`, `decision 0: exit: want true or false at offset 22`},
		{"class not an integer", `{"decisions":[{"class":1.5}]}`, `decision 0: class: "1.5" is not an integer`},
		{"class too large", `{"decisions":[{"class":99999999999999999999}]}`, `decision 0: class: "99999999999999999999" is out of the int range at offset 23`},
		{"number with leading zero", `{"tensor":{"dtype":"uint8","shape":[1],"data":[07]}}`, `tensor: data: invalid character '7' after array element (expecting ',' or ']') at offset 48`},
		{"number with plus", `{"tensor":{"dtype":"uint8","shape":[1],"data":[+7]}}`, `tensor: data: element 0: invalid character '+' at start of value at offset 47`},
		{"NaN literal", `{"tensor":{"dtype":"float32","shape":[1],"data":[NaN]}}`, `tensor: data: element 0: invalid character 'N' at start of value at offset 49`},
		{"hex number", `{"tensor":{"dtype":"float32","shape":[1],"data":[0x10]}}`, `tensor: data: invalid character 'x' after array element (expecting ',' or ']') at offset 50`},
		{"dot without digits", `{"tensor":{"dtype":"float32","shape":[1],"data":[1.]}}`, `tensor: data: element 0: invalid character ']' in number (expecting digit) at offset 51`},
		{"deferred data checked", `{"tensor":{"data":[7,256],"dtype":"uint8","shape":[2]}}`, `tensor: data: element 1: "256" is not an integer in 0..255`},
		{"deferred data not numbers", `{"tensor":{"data":[7,"x"],"dtype":"uint8","shape":[2]}}`, `tensor: data: element 1: want a number at offset 21`},
		{"deferred data count", `{"tensor":{"data":[7],"dtype":"uint8","shape":[2]}}`, `tensor: data: has 1 elements, want 2`},
		{"long value quoted briefly", `{"tensor":{"dtype":"uint8","shape":[1],"data":[1234567890123456789012345678901234567890]}}`, `"123456789012345678901234"... is not an integer`},
		{"time not a string", `{"sent_at":1,` + jsonTensor + `}`, `sent_at: want an RFC 3339 time string at offset 11`},
		{"time without zone", `{"sent_at":"2026-11-22T10:00:00",` + jsonTensor + `}`, `sent_at: want an RFC 3339 time string at offset 11, got a string: parsing time`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if strings.HasPrefix(tt.in, `{"decisions"`) {
				_, err = wire.DecodeDecisions(wire.JSON, []byte(tt.in))
			} else {
				_, err = wire.DecodeMessage(wire.JSON, []byte(tt.in))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
