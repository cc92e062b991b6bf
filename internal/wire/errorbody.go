package wire

import (
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// ErrorBody is the JSON body of every error answer of ddnn's HTTP
// services (funnels and inference functions). Rejected lists the bad
// messages of a 400 for a batch, so a caller can set exactly those aside
// and resend the rest.
type ErrorBody struct {
	Error    string      `json:"error"`
	Rejected []Rejection `json:"rejected,omitempty"`
}

// Rejection names one message of a batch that could not be taken.
type Rejection struct {
	Index  int    `json:"index"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// AppendErrorBody appends e as JSON and a newline. Invalid UTF-8 in a
// message becomes U+FFFD: an error answer must always be written.
func AppendErrorBody(dst []byte, e *ErrorBody) []byte {
	b, err := json.Marshal(e, jsontext.AllowInvalidUTF8(true))
	if err != nil {
		// Only a type without a JSON form fails, and ErrorBody has one.
		panic(fmt.Sprintf("wire: error body: %v", err))
	}
	dst = append(dst, b...)
	return append(dst, '\n')
}

// DecodeErrorBody reads an error answer.
func DecodeErrorBody(b []byte) (ErrorBody, error) {
	var e ErrorBody
	if err := json.Unmarshal(b, &e, jsonDecodeOptions); err != nil {
		return ErrorBody{}, fmt.Errorf("error body: %w", jsonError(b, err))
	}
	return e, nil
}
