package wire_test

import (
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

func TestErrorBody(t *testing.T) {
	e := wire.ErrorBody{Error: "1 of 2 messages rejected", Rejected: []wire.Rejection{{Index: 1, ID: "f1", Reason: "bad <shape>"}}}
	b := wire.AppendErrorBody(nil, &e)
	const want = `{"error":"1 of 2 messages rejected","rejected":[{"index":1,"id":"f1","reason":"bad <shape>"}]}` + "\n"
	if string(b) != want {
		t.Errorf("AppendErrorBody = %s, want %s", b, want)
	}
	got, err := wire.DecodeErrorBody(b)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "DecodeErrorBody", got, e)

	// A message with invalid UTF-8 is still answered.
	b = wire.AppendErrorBody(nil, &wire.ErrorBody{Error: "bad \xff byte"})
	if string(b) != "{\"error\":\"bad \uFFFD byte\"}\n" {
		t.Errorf("invalid UTF-8: AppendErrorBody = %q", b)
	}
	if _, err := wire.DecodeErrorBody([]byte(`<html>502</html>`)); err == nil {
		t.Error("DecodeErrorBody accepted HTML")
	}
}
