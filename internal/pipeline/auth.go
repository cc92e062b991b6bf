package pipeline

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Auth modes.
const (
	AuthToken = "token"
	AuthNone  = "none"
)

// Auth says who may use the funnels' zones. One pipeline is one trust
// domain: every site shares these settings.
type Auth struct {
	// Devices is how devices prove who they are on ingest: "token" (a
	// bearer token from DevicesFile, or a client certificate when
	// funnel.tls.client_ca_file is set) or "none" (anyone may send, with
	// any device id). Default: token when DevicesFile is set; unset, a
	// funnel whose device listener is reachable from outside this machine
	// refuses to start.
	Devices string `yaml:"devices"`
	// DevicesFile is the device credentials file (ddnn devices add).
	DevicesFile string `yaml:"devices_file"`
	// DevicesPSKKeyFile holds the master key (ddnn devices psk-key) that
	// derives each device's DTLS pre-shared key for funnel.coaps_listen
	// from its entry in DevicesFile (ddnn devices psk); it needs devices:
	// token.
	DevicesPSKKeyFile string `yaml:"devices_psk_key_file"`
	// Service is how the pipeline's own parts prove themselves on the
	// delivery zone and to replicas: "token" (ServiceTokenFile) or "none".
	// Default: token when ServiceTokenFile is set; unset, `ddnn up` makes
	// a token of its own for its children, and a funnel or replica
	// reachable from outside this machine refuses to start.
	Service string `yaml:"service"`
	// ServiceTokenFile holds the service tokens, one per line: the first
	// is sent, every one accepted (rotate by adding the new one first).
	ServiceTokenFile string `yaml:"service_token_file"`
}

// ServiceTokenPath is the service token file every part presents and
// accepts, absolute (auth.service_token_file resolved against the YAML's
// directory), or "" when auth.service is not token. LoadTokens of
// internal/auth reads it.
func (p *Pipeline) ServiceTokenPath() string {
	if p.Auth.Service != AuthToken {
		return ""
	}
	path := p.Path(p.Auth.ServiceTokenFile)
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// LocalServiceTokenPath is the service token file `ddnn up` makes for a
// pipeline that leaves auth.service unset: .run/<name>/service.token
// under the working directory, absolute.
func (p *Pipeline) LocalServiceTokenPath() string {
	path := filepath.Join(".run", p.Name, "service.token")
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

func (a *Auth) setDefaults() {
	if a.DevicesFile != "" {
		setDefault(&a.Devices, AuthToken)
	}
	if a.ServiceTokenFile != "" {
		setDefault(&a.Service, AuthToken)
	}
}

func (a *Auth) validate() []error {
	var errs []error
	for _, z := range []struct{ field, mode, fileField, file string }{
		{"auth.devices", a.Devices, "auth.devices_file", a.DevicesFile},
		{"auth.service", a.Service, "auth.service_token_file", a.ServiceTokenFile},
	} {
		switch z.mode {
		case "", AuthNone:
			if z.file != "" {
				errs = append(errs, fmt.Errorf("%s: %q contradicts %s", z.field, z.mode, z.fileField))
			}
		case AuthToken:
			if z.file == "" {
				errs = append(errs, fmt.Errorf("%s: token needs %s", z.field, z.fileField))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: %q unknown (want token or none)", z.field, z.mode))
		}
	}
	if a.Devices == AuthToken && a.Service == AuthNone {
		// The first tier believes a record's device only signed, and the
		// funnel signs the devices it authenticated with the service
		// token: without one every device's records would be refused.
		errs = append(errs, fmt.Errorf("auth.service: none contradicts auth.devices: token: the funnel signs each record's device with the service token "+
			"(set auth.service_token_file, or leave auth.service unset and ddnn up makes one)"))
	}
	if a.DevicesPSKKeyFile != "" && a.Devices != AuthToken {
		errs = append(errs, fmt.Errorf("auth.devices_psk_key_file: pre-shared keys derive from the device credentials: it needs auth.devices: token"))
	}
	return errs
}

// IsLoopback reports whether a listen address (host:port) is reachable
// only from this machine: a loopback IP or localhost. An empty host or an
// unspecified address (0.0.0.0, ::) listens on every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// CheckExposure refuses a listener reachable from outside this machine
// whose zone has no authentication, naming the settings that fix it or
// opt out, the way Redis's protected mode does. zone is "device" or
// "delivery"; what names the listener in the message. Devices are
// authenticated by the pipeline's auth.devices or by the site's own
// funnel.tls.client_ca_file.
func (v *SiteView) CheckExposure(zone, what, addr string) error {
	if IsLoopback(addr) {
		return nil
	}
	p := v.Pipeline
	switch zone {
	case "device":
		if p.Auth.Devices != "" || v.Funnel.TLS.ClientCAFile != "" {
			return nil
		}
		return fmt.Errorf("%s %s is reachable from outside this machine and devices are not authenticated: "+
			"set auth.devices_file (ddnn devices add -f FILE NAME), or auth.devices: none to let anyone send", what, addr)
	default:
		if p.Auth.Service != "" {
			return nil
		}
		return fmt.Errorf("%s %s is reachable from outside this machine and the delivery zone is not authenticated: "+
			"set auth.service_token_file (ddnn token > FILE), or auth.service: none to let anyone deliver", what, addr)
	}
}

// CheckEmbeddedExposure refuses an embedded broker reachable from outside
// this machine unless it requires TLS and SASL: the broker does not see
// the funnels' auth settings, and without both anyone who reaches it may
// read and write every topic. key names the listen setting in the message
// (kafka.embedded_listen, or a site's). kafka.embedded_allow_insecure opts
// out.
func (k *Kafka) CheckEmbeddedExposure(key string) error {
	if !k.Embedded() || IsLoopback(k.EmbeddedListen) || k.EmbeddedAllowInsecure {
		return nil
	}
	var missing []string
	if k.EmbeddedTLS == nil {
		missing = append(missing, "kafka.embedded_tls")
	}
	if !k.Secured() {
		missing = append(missing, "kafka.embedded_users")
	}
	// Without ACLs a device user may read, write and delete every topic.
	if !k.EmbeddedACLs && slices.ContainsFunc(k.EmbeddedUsers, func(u EmbeddedUser) bool { return u.Role == RoleDevice }) {
		missing = append(missing, "kafka.embedded_acls (it has device users)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s is reachable from outside this machine and the embedded broker does not require TLS and SASL (and ACLs, with device users): "+
		"set %s (docs/kafka-security.md), listen on 127.0.0.1, or set kafka.embedded_allow_insecure: true to let anyone who reaches it read and write every topic",
		key, k.EmbeddedListen, strings.Join(missing, " and "))
}
