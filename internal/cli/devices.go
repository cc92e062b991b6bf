package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/certs"
)

const devicesSynopsis = `devices add|list|revoke -f CREDENTIALS [--certificate-only] [NAME]

Manages a device credentials file (auth.devices_file): each device has a
bearer token, of which the file keeps only the SHA-256. Running funnels
re-read the file when it changes: an added device may send, a revoked one
is refused, within a second and without a restart.

  add NAME     makes NAME a token and prints it once, on its own line
               (a revoked NAME gets a new one; its client certificates
               issued before the revocation stay refused)
  list         the devices, when added, and which are revoked
  revoke NAME  refuses every credential of NAME in the file from now on:
               its token, its DTLS pre-shared key, its client certificates
               (common name NAME), on open connections too, and its Kafka
               record key; --certificate-only records NAME revoked when it
               has a certificate and no token. A Kafka user of the device
               is the broker's: remove it there
  psk, record-key, psk-key
               a device's DTLS pre-shared key; the key it signs its Kafka
               records' device id with; a new master key (ddnn devices psk -h)`

// runDevices manages device credentials.
func runDevices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", devicesSynopsis)
		return flag.ErrHelp
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", devicesSynopsis)
		return fmt.Errorf("%w: want add, list or revoke", errUsage)
	}
	verb := args[0]
	if verb == "psk" || verb == "psk-key" || verb == "record-key" {
		return runDevicesPSK(ctx, args, stdout, stderr)
	}
	fs := newFlags("devices "+verb, devicesSynopsis, stderr)
	file := fs.String("f", "", "the device credentials file (required)")
	certOnly := fs.Bool("certificate-only", false, "revoke: NAME may be missing from the file (a device with a client certificate and no token)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if *file == "" {
		fs.Usage()
		return fmt.Errorf("%w: -f CREDENTIALS is required", errUsage)
	}
	name := fs.Arg(0)
	wantName := verb == "add" || verb == "revoke"
	if wantName != (fs.NArg() == 1) || fs.NArg() > 1 {
		fs.Usage()
		return fmt.Errorf("%w: devices %s takes %s", errUsage, verb, map[bool]string{true: "one NAME", false: "no NAME"}[wantName])
	}
	if *certOnly && verb != "revoke" {
		return fmt.Errorf("%w: --certificate-only is for devices revoke", errUsage)
	}
	now := time.Now()
	switch verb {
	case "add":
		token, err := auth.AddDevice(*file, name, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "device %s added to %s; its token, shown only now (send it as Authorization: Bearer TOKEN):\n", name, *file)
		fmt.Fprintln(stdout, token)
	case "revoke":
		revoke := auth.RevokeDevice
		if *certOnly {
			revoke = auth.RevokeCertificateOnly
		}
		if err := revoke(*file, name, now); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s revoked: within a second running funnels refuse its token, its pre-shared key and its client certificates, on open connections too, and the first tier its signed Kafka records\n", name)
		fmt.Fprintf(stderr, "a Kafka user of %s, if it has one, is not in this file and still authenticates to Kafka: remove it from kafka.embedded_users (and restart) or from the cluster\n", name)
	case "list":
		devices, err := auth.ListDevices(*file)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tADDED\tREVOKED")
		for _, d := range devices {
			revoked := "-"
			if d.Revoked != nil {
				revoked = d.Revoked.Format(time.RFC3339)
			}
			added := "-"
			if !d.Added.IsZero() {
				added = d.Added.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.ID, added, revoked)
		}
		tw.Flush()
	default:
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", devicesSynopsis)
		return fmt.Errorf("%w: unknown devices command %q (want add, list or revoke)", errUsage, verb)
	}
	return nil
}

// runToken prints a new service token, for auth.service_token_file.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", "token > FILE\n\nPrints a new random service token, for auth.service_token_file: every part of\nthe pipeline sends the file's first token and accepts each of its tokens.", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, auth.NewToken(auth.ServiceTokenPrefix))
	return nil
}

// runCerts makes a development CA and certificates.
func runCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("certs", "certs --dir DIR [--hosts 127.0.0.1,localhost] [--devices dev-1,dev-2]\n\nMakes a development CA, a server certificate for the funnel's HTTPS device\nlistener (funnel.tls) and a client certificate per device (common name =\ndevice id, for funnel.tls.client_ca_file). For trying things on one machine:\nin production, the operator's own CA signs them.", stderr)
	dir := fs.String("dir", "", "directory to write into (required; existing certificates are not overwritten)")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "names and addresses of the server certificate, comma-separated")
	devices := fs.String("devices", "", "device ids to make client certificates for, comma-separated")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		fs.Usage()
		return fmt.Errorf("%w: --dir is required", errUsage)
	}
	ids := splitList(*devices)
	for _, id := range ids {
		if err := auth.CheckDeviceID(id); err != nil {
			return fmt.Errorf("%w: --devices: %v", errUsage, err)
		}
	}
	f, err := certs.Make(*dir, splitList(*hosts), ids, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA:      %s (key %s: keep it off the servers)\nserver:  %s, key %s (funnel.tls.cert_file, key_file)\n", f.CA, f.CAKey, f.Cert, f.Key)
	for _, id := range ids {
		fmt.Fprintf(stdout, "device:  %s: %s, key %s\n", id, f.Clients[id][0], f.Clients[id][1])
	}
	return nil
}
