package auth

import (
	"fmt"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// LoadDeviceClaims checks the device claims of the first tier's records when
// devices are authenticated (nil otherwise: a claim is then taken as is):
// signed by the funnel with service, or, with auth.devices_psk_key_file,
// by the device itself with its record key.
func LoadDeviceClaims(p *pipeline.Pipeline, service *Tokens) (*Claims, error) {
	if p.Auth.Devices != pipeline.AuthToken {
		return nil, nil
	}
	var d *Devices
	var master []byte
	if p.Auth.DevicesPSKKeyFile != "" {
		var err error
		if d, err = LoadDevices(p.Path(p.Auth.DevicesFile)); err != nil {
			return nil, err
		}
		if master, err = LoadPSKKey(p.Path(p.Auth.DevicesPSKKeyFile)); err != nil {
			return nil, fmt.Errorf("auth.devices_psk_key_file: %w", err)
		}
	}
	return NewClaims(service, d, master)
}
