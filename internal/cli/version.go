package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/onnx"
)

// version and commit are set at build time with -ldflags "-X ...cli.version=v1.2.3".
var (
	version = "dev"
	commit  = ""
)

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := command.NewFlagSet("version", "version [--ort-lib PATH]", stderr)
	var ortLib string
	onnx.LibFlag(fs, &ortLib)
	if err := command.Parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ddnn %s\n", version)
	if commit != "" {
		fmt.Fprintf(stdout, "commit:      %s\n", commit)
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, when, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
		if rev != "" {
			fmt.Fprintf(stdout, "commit:      %s%s %s\n", rev, dirty, when)
		}
	}
	fmt.Fprintf(stdout, "go:          %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	path, err := onnx.Init(ortLib)
	if err != nil {
		fmt.Fprintf(stdout, "onnxruntime: not loaded: %v\n", err)
		return nil
	}
	fmt.Fprintf(stdout, "onnxruntime: %s (%s)\n", onnx.Version(), path)
	return nil
}
