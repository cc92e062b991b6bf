package pipeline

import (
	"fmt"
	"slices"
)

// SASL mechanisms a Kafka client may use.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLOAuthBearer = "OAUTHBEARER"
)

// Roles of an embedded broker's user: what its ACLs allow when
// kafka.embedded_acls is on.
const (
	// RolePipeline is the pipeline's own parts: every operation on the
	// topics and consumer groups named <name>.* (see EmbeddedUser).
	RolePipeline = "pipeline"
	// RoleDevice is a device writing straight to Kafka: WRITE on the first
	// tier's input topic, nothing else.
	RoleDevice = "device"
)

// KafkaTLS is how the Kafka clients use TLS; the field names are Redpanda
// Connect's kafka_franz tls block.
type KafkaTLS struct {
	Enabled bool `yaml:"enabled"`
	// RootCAsFile is a PEM file of the CAs that sign the brokers'
	// certificates; empty means the system's roots.
	RootCAsFile string `yaml:"root_cas_file"`
	// ClientCerts are presented to brokers that ask for a certificate
	// (mutual TLS).
	ClientCerts []KafkaClientCert `yaml:"client_certs"`
	// ServerName checks the brokers' certificates against this name
	// instead of the host dialled.
	ServerName string `yaml:"server_name"`
	// SkipCertVerify accepts any broker certificate: for trying things
	// out only; every client start logs a warning.
	SkipCertVerify bool `yaml:"skip_cert_verify"`
}

// KafkaClientCert is one certificate and its key, PEM files.
type KafkaClientCert struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// KafkaSASL is one SASL mechanism the clients may authenticate with; the
// field names are kafka_franz's sasl list. The password never sits in the
// YAML: it comes from PasswordFile or PasswordEnv, read again at every
// authentication, so a rotated secret is picked up without a restart.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is refused when set: it exists so a literal password in
	// the YAML gets a message naming password_file and password_env
	// rather than "unknown field".
	Password string `yaml:"password"`
	// PasswordFile holds the password (a trailing newline is dropped).
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
	// TokenFile holds the OAUTHBEARER token.
	TokenFile string `yaml:"token_file"`
}

// EmbeddedTLS is the embedded broker's certificate and key, PEM files:
// with it the broker accepts TLS connections only.
type EmbeddedTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// EmbeddedUser is a SASL user of the embedded broker.
type EmbeddedUser struct {
	Username string `yaml:"username"`
	// Mechanism is SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	// Password is refused, as in KafkaSASL.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Role is what the user may do with kafka.embedded_acls on: pipeline
	// (the default: any operation on the topics and groups named
	// <name>.*, and describing the cluster) or device (write to the first
	// tier's input topic).
	Role string `yaml:"role"`
}

// Secured reports whether the embedded broker requires SASL.
func (k *Kafka) Secured() bool { return len(k.EmbeddedUsers) > 0 }

// inheritSecurity gives a site the top level's TLS, SASL and, when the
// site runs the embedded broker, the embedded broker's security settings
// it leaves unset. An empty list (sasl: []) or tls: {enabled: false} is
// the site's own choice and is kept.
func (k *Kafka) inheritSecurity(top *Kafka) {
	if k.TLS == nil {
		k.TLS = top.TLS
	}
	if k.SASL == nil {
		k.SASL = top.SASL
	}
	if !k.Embedded() {
		return
	}
	if k.EmbeddedTLS == nil {
		k.EmbeddedTLS = top.EmbeddedTLS
	}
	if k.EmbeddedUsers == nil {
		k.EmbeddedUsers = top.EmbeddedUsers
	}
}

// resolvePaths makes the file paths of k's security settings absolute,
// against the YAML's directory. It copies what it changes, so sections
// sharing an inherited setting stay consistent, and is idempotent.
func (k *Kafka) resolvePaths(p *Pipeline) {
	if k.TLS != nil {
		t := *k.TLS
		t.RootCAsFile = p.Path(t.RootCAsFile)
		t.ClientCerts = slices.Clone(t.ClientCerts)
		for i := range t.ClientCerts {
			c := &t.ClientCerts[i]
			c.CertFile, c.KeyFile = p.Path(c.CertFile), p.Path(c.KeyFile)
		}
		k.TLS = &t
	}
	if k.SASL != nil {
		k.SASL = slices.Clone(k.SASL)
		for i := range k.SASL {
			s := &k.SASL[i]
			s.PasswordFile, s.TokenFile = p.Path(s.PasswordFile), p.Path(s.TokenFile)
		}
	}
	if k.EmbeddedTLS != nil {
		t := *k.EmbeddedTLS
		t.CertFile, t.KeyFile = p.Path(t.CertFile), p.Path(t.KeyFile)
		k.EmbeddedTLS = &t
	}
	if k.EmbeddedUsers != nil {
		k.EmbeddedUsers = slices.Clone(k.EmbeddedUsers)
		for i := range k.EmbeddedUsers {
			u := &k.EmbeddedUsers[i]
			u.PasswordFile = p.Path(u.PasswordFile)
		}
	}
}

// resolveKafkaPaths resolves the security files of every kafka section
// against p.Dir.
func (p *Pipeline) resolveKafkaPaths() {
	p.Kafka.resolvePaths(p)
	for i := range p.SiteList {
		p.SiteList[i].Kafka.resolvePaths(p)
	}
}

// literalPassword is the message for a password written into the YAML.
const literalPassword = "a literal password is refused: the YAML ends up in repositories, images and ConfigMaps; put the password in a file (password_file) or an environment variable (password_env)"

// validateSecurity checks the tls and sasl settings a site inherits; f is
// the section's path.
func (k *Kafka) validateSecurity(f string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{f, field}, args...)...))
	}
	if t := k.TLS; t != nil {
		if !t.Enabled && (t.RootCAsFile != "" || len(t.ClientCerts) > 0 || t.ServerName != "" || t.SkipCertVerify) {
			bad("tls.enabled", "false, but other tls settings are given: set enabled: true or remove them")
		}
		if t.SkipCertVerify && t.RootCAsFile != "" {
			bad("tls.skip_cert_verify", "true makes tls.root_cas_file pointless: verify with the CA instead")
		}
		for i, c := range t.ClientCerts {
			if c.CertFile == "" {
				bad(fmt.Sprintf("tls.client_certs[%d].cert_file", i), "required")
			}
			if c.KeyFile == "" {
				bad(fmt.Sprintf("tls.client_certs[%d].key_file", i), "required")
			}
		}
	}
	seen := map[string]bool{}
	for i, s := range k.SASL {
		g := fmt.Sprintf("sasl[%d]", i)
		switch s.Mechanism {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
			if s.Username == "" {
				bad(g+".username", "required for %s", s.Mechanism)
			}
			errs = append(errs, checkSecret(f+"."+g, s.Password, s.PasswordFile, s.PasswordEnv)...)
			if s.TokenFile != "" {
				bad(g+".token_file", "only for OAUTHBEARER, not %s", s.Mechanism)
			}
		case SASLOAuthBearer:
			if s.TokenFile == "" {
				bad(g+".token_file", "required for OAUTHBEARER: a file holding the token")
			}
			if s.Password != "" {
				bad(g+".password", literalPassword)
			}
			if s.Username != "" || s.PasswordFile != "" || s.PasswordEnv != "" {
				bad(g, "OAUTHBEARER takes token_file only, no username or password")
			}
		case "":
			bad(g+".mechanism", "required (%s, %s, %s or %s)", SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer)
			continue
		default:
			bad(g+".mechanism", "%q unknown (want %s, %s, %s or %s)", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer)
			continue
		}
		if seen[s.Mechanism] {
			bad(g+".mechanism", "%s is listed twice", s.Mechanism)
		}
		seen[s.Mechanism] = true
	}
	return errs
}

// checkSecret reports a literal password and a password given in no way
// or in two; f is the path of the section holding them.
func checkSecret(f, literal, file, env string) []error {
	switch {
	case literal != "":
		return []error{fmt.Errorf("%s.password: %s", f, literalPassword)}
	case file == "" && env == "":
		return []error{fmt.Errorf("%s: a password is required: password_file or password_env", f)}
	case file != "" && env != "":
		return []error{fmt.Errorf("%s: password_file and password_env are both set: keep one", f)}
	}
	return nil
}

// validateEmbeddedSecurity checks the embedded broker's TLS, users and
// ACLs against where the Kafka is and what the clients use; f is the
// section's path.
func (k *Kafka) validateEmbeddedSecurity(f string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{f, field}, args...)...))
	}
	if !k.Embedded() {
		for _, s := range []struct {
			field string
			set   bool
		}{
			{"embedded_tls", k.EmbeddedTLS != nil},
			{"embedded_users", len(k.EmbeddedUsers) > 0},
			{"embedded_acls", k.EmbeddedACLs},
		} {
			if s.set {
				bad(s.field, "configures the embedded broker, which does not run with kafka.brokers")
			}
		}
		return errs
	}
	tlsOn := k.TLS != nil && k.TLS.Enabled
	if t := k.EmbeddedTLS; t != nil {
		if t.CertFile == "" {
			bad("embedded_tls.cert_file", "required")
		}
		if t.KeyFile == "" {
			bad("embedded_tls.key_file", "required")
		}
		if !tlsOn {
			bad("tls.enabled", "required: the embedded broker accepts TLS only (kafka.embedded_tls)")
		}
	} else if tlsOn {
		bad("tls.enabled", "true, but the embedded broker has no certificate: set kafka.embedded_tls")
	}
	names := map[string]bool{}
	pipelineUsers := map[string]bool{} // mechanism + " " + username
	for i, u := range k.EmbeddedUsers {
		g := fmt.Sprintf("embedded_users[%d]", i)
		if u.Username == "" {
			bad(g+".username", "required")
		} else if names[u.Username] {
			bad(g+".username", "%q is listed twice", u.Username)
		}
		names[u.Username] = true
		switch u.Mechanism {
		case SASLScramSHA256, SASLScramSHA512:
		case "":
			bad(g+".mechanism", "required (%s or %s)", SASLScramSHA256, SASLScramSHA512)
		case SASLPlain:
			// kfake's PLAIN keeps passwords in the clear in its data
			// directory and lets a name it does not know in with an
			// empty password.
			bad(g+".mechanism", "PLAIN is not offered by the embedded broker: use %s or %s", SASLScramSHA256, SASLScramSHA512)
		default:
			bad(g+".mechanism", "%q unknown (the embedded broker has %s and %s)", u.Mechanism, SASLScramSHA256, SASLScramSHA512)
		}
		errs = append(errs, checkSecret(f+"."+g, u.Password, u.PasswordFile, u.PasswordEnv)...)
		switch u.Role {
		case RolePipeline:
			pipelineUsers[u.Mechanism+" "+u.Username] = true
		case RoleDevice:
		default:
			bad(g+".role", "%q unknown (want %s or %s)", u.Role, RolePipeline, RoleDevice)
		}
	}
	if k.EmbeddedACLs && len(k.EmbeddedUsers) == 0 {
		bad("embedded_acls", "needs kafka.embedded_users: ACLs name SASL users")
	}
	if len(k.EmbeddedUsers) == 0 {
		if len(k.SASL) > 0 {
			bad("sasl", "the embedded broker has no users to authenticate: set kafka.embedded_users")
		}
		return errs
	}
	if len(pipelineUsers) == 0 {
		bad("embedded_users", "no user has role %s: the pipeline's own parts could not connect", RolePipeline)
	}
	ok := false
	for _, s := range k.SASL {
		if pipelineUsers[s.Mechanism+" "+s.Username] {
			ok = true
		}
	}
	if !ok && len(pipelineUsers) > 0 {
		bad("sasl", "required: the embedded broker requires SASL; list one of its %s users (kafka.embedded_users) with the same mechanism", RolePipeline)
	}
	return errs
}
