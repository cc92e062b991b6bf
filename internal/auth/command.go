package auth

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
)

// DevicesSynopsis is ddnn devices' usage line and help.
const DevicesSynopsis = `devices add|list|revoke -f CREDENTIALS [--certificate-only] [NAME]

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

// DevicesCommand runs ddnn devices: it manages device credentials.
func DevicesCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", DevicesSynopsis)
		return flag.ErrHelp
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", DevicesSynopsis)
		return fmt.Errorf("%w: want add, list or revoke", command.ErrUsage)
	}
	verb := args[0]
	if verb == "psk" || verb == "psk-key" || verb == "record-key" {
		return pskCommand(args, stdout, stderr)
	}
	fs := command.NewFlagSet("devices "+verb, DevicesSynopsis, stderr)
	file := fs.String("f", "", "the device credentials file (required)")
	certOnly := fs.Bool("certificate-only", false, "revoke: NAME may be missing from the file (a device with a client certificate and no token)")
	if err := fs.Parse(args[1:]); err != nil {
		return command.ErrUsage
	}
	if *file == "" {
		fs.Usage()
		return fmt.Errorf("%w: -f CREDENTIALS is required", command.ErrUsage)
	}
	name := fs.Arg(0)
	wantName := verb == "add" || verb == "revoke"
	if wantName != (fs.NArg() == 1) || fs.NArg() > 1 {
		fs.Usage()
		return fmt.Errorf("%w: devices %s takes %s", command.ErrUsage, verb, map[bool]string{true: "one NAME", false: "no NAME"}[wantName])
	}
	if *certOnly && verb != "revoke" {
		return fmt.Errorf("%w: --certificate-only is for devices revoke", command.ErrUsage)
	}
	now := time.Now()
	switch verb {
	case "add":
		token, err := AddDevice(*file, name, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "device %s added to %s; its token, shown only now (send it as Authorization: Bearer TOKEN):\n", name, *file)
		fmt.Fprintln(stdout, token)
	case "revoke":
		revoke := RevokeDevice
		if *certOnly {
			revoke = RevokeCertificateOnly
		}
		if err := revoke(*file, name, now); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s revoked: within a second running funnels refuse its token, its pre-shared key and its client certificates, on open connections too, and the first tier its signed Kafka records\n", name)
		fmt.Fprintf(stderr, "a Kafka user of %s, if it has one, is not in this file and still authenticates to Kafka: remove it from kafka.embedded_users (and restart) or from the cluster\n", name)
	case "list":
		devices, err := ListDevices(*file)
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
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", DevicesSynopsis)
		return fmt.Errorf("%w: unknown devices command %q (want add, list or revoke)", command.ErrUsage, verb)
	}
	return nil
}

// TokenCommand runs ddnn token: it prints a new service token, for
// auth.service_token_file.
func TokenCommand(args []string, stdout, stderr io.Writer) error {
	fs := command.NewFlagSet("token", "token > FILE\n\nPrints a new random service token, for auth.service_token_file: every part of\nthe pipeline sends the file's first token and accepts each of its tokens.", stderr)
	if err := command.Parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, NewToken(ServiceTokenPrefix))
	return nil
}

// pskSynopsis is the usage line and help of ddnn devices psk, record-key
// and psk-key.
const pskSynopsis = `devices psk|record-key -f CREDENTIALS --key KEYFILE NAME | devices psk-key > KEYFILE

CoAP over DTLS (funnel.coaps_listen) with pre-shared keys: the PSK identity
is the device id, and its key is derived from the device's entry in the
credentials file and a master key (auth.devices_psk_key_file), so no key is
stored anywhere. Re-adding a revoked device gives it a new key. A device
writing straight to Kafka signs its device id with its record key, derived
the same way under another label.

  psk NAME         prints NAME's key: 64 hex digits, whose characters are the
                   key (coap-client-openssl -u NAME -k KEY coaps://HOST/v1/ingest)
  record-key NAME  prints NAME's record key: 64 hex digits, whose characters
                   are the HMAC key of the ddnn-device-sig header
  psk-key          prints a new random master key`

// pskCommand runs ddnn devices psk, record-key and psk-key; args start
// with the verb.
func pskCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", pskSynopsis)
		return fmt.Errorf("%w: want psk or psk-key", command.ErrUsage)
	}
	verb := args[0]
	fs := command.NewFlagSet("devices "+verb, pskSynopsis, stderr)
	switch verb {
	case "psk-key":
		if err := command.Parse(fs, args[1:]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, NewPSKKey())
		return nil
	case "psk", "record-key":
		file := fs.String("f", "", "the device credentials file (required)")
		keyFile := fs.String("key", "", "the PSK master key file, auth.devices_psk_key_file (required)")
		if err := fs.Parse(args[1:]); err != nil {
			return command.ErrUsage
		}
		if *file == "" || *keyFile == "" || fs.NArg() != 1 {
			fs.Usage()
			return fmt.Errorf("%w: devices %s takes -f CREDENTIALS, --key KEYFILE and one NAME", command.ErrUsage, verb)
		}
		derive := DevicePSK
		if verb == "record-key" {
			derive = DeviceRecordKey
		}
		key, err := derive(*file, *keyFile, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(key))
		return nil
	}
	fmt.Fprintf(stderr, "Usage: ddnn %s\n", pskSynopsis)
	return fmt.Errorf("%w: unknown devices command %q", command.ErrUsage, verb)
}
