package certs

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/command"
)

// Synopsis is ddnn certs' usage line and help.
const Synopsis = `certs --dir DIR [--hosts 127.0.0.1,localhost] [--devices dev-1,dev-2]

Makes a development CA, a server certificate for the funnel's HTTPS device
listener (funnel.tls) and a client certificate per device (common name =
device id, for funnel.tls.client_ca_file). For trying things on one machine:
in production, the operator's own CA signs them.`

// Command is ddnn certs with its flags.
type Command struct {
	Dir, Hosts, Devices string
}

// Flags binds o to ddnn certs' flags.
func (o *Command) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Dir, "dir", "", "directory to write into (required; existing certificates are not overwritten)")
	fs.StringVar(&o.Hosts, "hosts", "127.0.0.1,localhost", "names and addresses of the server certificate, comma-separated")
	fs.StringVar(&o.Devices, "devices", "", "device ids to make client certificates for, comma-separated")
}

// Run makes the certificates and says where they are.
func (o *Command) Run(_ context.Context, stdout, _ io.Writer) error {
	if o.Dir == "" {
		return command.Usagef("--dir is required")
	}
	ids := command.SplitList(o.Devices)
	for _, id := range ids {
		if err := auth.CheckDeviceID(id); err != nil {
			return command.Usagef("--devices: %v", err)
		}
	}
	f, err := Make(o.Dir, command.SplitList(o.Hosts), ids, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA:      %s (key %s: keep it off the servers)\nserver:  %s, key %s (funnel.tls.cert_file, key_file)\n", f.CA, f.CAKey, f.Cert, f.Key)
	for _, id := range ids {
		fmt.Fprintf(stdout, "device:  %s: %s, key %s\n", id, f.Clients[id][0], f.Clients[id][1])
	}
	return nil
}
