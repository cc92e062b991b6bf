package wire_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// TestBinaryVersion1 pins the bytes of version 1: payloads written by an
// earlier ddnn keep decoding after the form gains a version.
func TestBinaryVersion1(t *testing.T) {
	single := cat(msgHeader, msgItem(u8Tensor(7, 8)))
	m, err := wire.DecodeMessage(wire.Binary, single)
	if err != nil {
		t.Fatalf("version 1 message: %v", err)
	}
	want := wire.Message{ID: "a", Tensor: wire.Tensor{DType: wire.Uint8, Shape: []int{2}, Data: []byte{7, 8}}}
	checkEqual(t, "version 1 message", m, want)
	if b, err := wire.AppendMessage(nil, wire.Binary, &want); err != nil || !slices.Equal(b, single) {
		t.Errorf("AppendMessage = %q, %v; want the version 1 bytes %q", b, err, single)
	}
	if _, err := wire.DecodeMessages(wire.Binary, cat(msgsHeader, uv(1), msgItem(u8Tensor(7)))); err != nil {
		t.Errorf("version 1 batch: %v", err)
	}
	if _, err := wire.DecodeDecisions(wire.Binary, cat(decsHeader, uv(1), decItem(1, 0.5))); err != nil {
		t.Errorf("version 1 decisions: %v", err)
	}
}

// TestBinaryUnknownVersion: a version this build does not read is an
// UnsupportedVersionError naming it and the versions read, whichever
// decoder meets it, also in a record without an encoding header.
func TestBinaryUnknownVersion(t *testing.T) {
	v9 := func(header []byte) []byte { return append([]byte("DDN\x09"), header[4]) }
	for _, tc := range []struct {
		name   string
		decode func() error
	}{
		{"message", func() error {
			_, err := wire.DecodeMessage(wire.Binary, cat(v9(msgHeader), msgItem(u8Tensor(1))))
			return err
		}},
		{"messages", func() error { _, err := wire.DecodeMessages(wire.Binary, cat(v9(msgsHeader), uv(0))); return err }},
		{"decisions", func() error { _, err := wire.DecodeDecisions(wire.Binary, cat(v9(decsHeader), uv(0))); return err }},
		{"record", func() error {
			_, err := wire.DecodeRecord(nil, cat(v9(msgHeader), msgItem(u8Tensor(1))), nil, &wire.RawInput{DType: wire.Uint8, Shape: []int{11}}, "x")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode()
			var uv *wire.UnsupportedVersionError
			if !errors.As(err, &uv) || uv.Version != 9 || !slices.Equal(uv.Supported, []byte{1}) {
				t.Fatalf("error = %v, want an UnsupportedVersionError for version 9", err)
			}
			if want := "unsupported binary version 9 (this build reads version 1)"; !strings.Contains(err.Error(), want) {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
}
