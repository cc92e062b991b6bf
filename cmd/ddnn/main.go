// Command ddnn runs distributed deep neural networks over the edge, fog and
// cloud as stream-triggered functions. One binary plays every role; see
// `ddnn help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ddnn-continuum/ddnn/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
