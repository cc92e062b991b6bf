package onnx

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// SHAPrefixLen is how many hex digits of a model file's sha256 name it in
// an inference answer (and so in the hops of records), in traces and in
// status.
const SHAPrefixLen = 12

// FileSHA256 is the first SHAPrefixLen hex digits of the sha256 of the
// model file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("model sha256: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("model sha256: %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:SHAPrefixLen], nil
}
