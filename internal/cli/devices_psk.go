package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ddnn-continuum/ddnn/internal/auth"
)

const devicesPSKSynopsis = `devices psk|record-key -f CREDENTIALS --key KEYFILE NAME | devices psk-key > KEYFILE

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

// runDevicesPSK runs `ddnn devices psk` and `ddnn devices psk-key`; args
// start with the verb.
func runDevicesPSK(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: ddnn %s\n", devicesPSKSynopsis)
		return fmt.Errorf("%w: want psk or psk-key", errUsage)
	}
	verb := args[0]
	fs := newFlags("devices "+verb, devicesPSKSynopsis, stderr)
	switch verb {
	case "psk-key":
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, auth.NewPSKKey())
		return nil
	case "psk", "record-key":
		file := fs.String("f", "", "the device credentials file (required)")
		keyFile := fs.String("key", "", "the PSK master key file, auth.devices_psk_key_file (required)")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		if *file == "" || *keyFile == "" || fs.NArg() != 1 {
			fs.Usage()
			return fmt.Errorf("%w: devices %s takes -f CREDENTIALS, --key KEYFILE and one NAME", errUsage, verb)
		}
		derive := auth.DevicePSK
		if verb == "record-key" {
			derive = auth.DeviceRecordKey
		}
		key, err := derive(*file, *keyFile, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(key))
		return nil
	}
	fmt.Fprintf(stderr, "Usage: ddnn %s\n", devicesPSKSynopsis)
	return fmt.Errorf("%w: unknown devices command %q", errUsage, verb)
}
