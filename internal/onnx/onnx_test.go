package onnx

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLocateMissingNamesPathsAndInstall(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	for _, tc := range []struct {
		name, flag, env string
	}{
		{"flag", missing, ""},
		{"env", "", missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvVar, tc.env)
			_, err := Locate(tc.flag)
			if err == nil {
				t.Fatal("found a library that does not exist")
			}
			for _, want := range []string{missing, `"make deps"`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestCandidatesOrder(t *testing.T) {
	t.Setenv(EnvVar, "")
	old := DefaultLibPath
	DefaultLibPath = "/opt/ddnn/libonnxruntime.so.1"
	defer func() { DefaultLibPath = old }()
	c := Candidates("")
	if len(c) < 2 || c[0] != DefaultLibPath {
		t.Fatalf("candidates %v", c)
	}
	if !strings.HasSuffix(c[len(c)-1], relInstallPath) {
		t.Errorf("last candidate %s is not the checkout's install path", c[len(c)-1])
	}
	t.Setenv(EnvVar, "/env/lib.so")
	if c := Candidates(""); len(c) != 1 || c[0] != "/env/lib.so" {
		t.Errorf("env candidates %v", c)
	}
	if c := Candidates("/flag/lib.so"); len(c) != 1 || c[0] != "/flag/lib.so" {
		t.Errorf("flag candidates %v", c)
	}
}
