package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// Secret reads a secret from file, else from the environment variable
// env; one trailing newline is dropped. An empty secret is an error. The
// error names where the secret was looked for, never its value.
func Secret(file, env string) (string, error) {
	var v string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", fmt.Errorf("%s is empty", file)
		}
	case env != "":
		var ok bool
		if v, ok = os.LookupEnv(env); !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set or empty", env)
		}
	default:
		return "", errors.New("no password_file or password_env")
	}
	return v, nil
}

// securityOptions are the TLS and SASL options of a client of k: the one
// place the kafka section's tls and sasl become franz-go options. Every
// file and variable is read once here, so a missing one fails the start
// with its field named; SASL secrets are read again at each
// authentication, so rotating a password or token file needs no restart.
func securityOptions(k *pipeline.Kafka, role string, log *slog.Logger) ([]kgo.Opt, error) {
	var (
		opts []kgo.Opt
		errs []error
	)
	if k.TLS != nil && k.TLS.Enabled {
		cfg, err := TLSConfig(k.TLS)
		if err != nil {
			errs = append(errs, err)
		} else {
			opts = append(opts, kgo.DialTLSConfig(cfg))
		}
		if k.TLS.SkipCertVerify {
			log.Warn("KAFKA TLS CERTIFICATES ARE NOT VERIFIED (kafka.tls.skip_cert_verify: true): anyone on the path to the brokers can read and change this client's traffic and take its SASL credentials; set kafka.tls.root_cas_file instead",
				"role", role)
		}
	}
	var mechs []sasl.Mechanism
	for i, s := range k.SASL {
		field := fmt.Sprintf("kafka.sasl[%d]", i)
		m, err := mechanism(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		mechs = append(mechs, m)
	}
	if len(mechs) > 0 {
		opts = append(opts, kgo.SASL(mechs...))
	}
	return opts, errors.Join(errs...)
}

// mechanism makes one SASL mechanism whose secret is read at each
// authentication; it checks now that the secret can be read.
func mechanism(s pipeline.KafkaSASL) (sasl.Mechanism, error) {
	if s.Mechanism == pipeline.SASLOAuthBearer {
		token := func() (string, error) {
			t, err := Secret(s.TokenFile, "")
			if err != nil {
				return "", fmt.Errorf("token_file: %w", err)
			}
			return strings.TrimSpace(t), nil
		}
		if _, err := token(); err != nil {
			return nil, err
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			t, err := token()
			return oauth.Auth{Token: t}, err
		}), nil
	}
	password := func() (string, error) {
		pw, err := Secret(s.PasswordFile, s.PasswordEnv)
		if err != nil && s.PasswordFile != "" {
			return "", fmt.Errorf("password_file: %w", err)
		} else if err != nil {
			return "", fmt.Errorf("password_env: %w", err)
		}
		return pw, nil
	}
	if _, err := password(); err != nil {
		return nil, err
	}
	switch s.Mechanism {
	case pipeline.SASLPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			pw, err := password()
			return plain.Auth{User: s.Username, Pass: pw}, err
		}), nil
	case pipeline.SASLScramSHA256, pipeline.SASLScramSHA512:
		fn := func(context.Context) (scram.Auth, error) {
			pw, err := password()
			return scram.Auth{User: s.Username, Pass: pw}, err
		}
		if s.Mechanism == pipeline.SASLScramSHA256 {
			return scram.Sha256(fn), nil
		}
		return scram.Sha512(fn), nil
	}
	return nil, fmt.Errorf("mechanism %q unknown", s.Mechanism)
}

// TLSConfig is the client TLS configuration of a kafka.tls section: the
// CA file's roots (else the system's), client certificates, the server
// name and, if asked, no verification; at least TLS 1.2.
func TLSConfig(t *pipeline.KafkaTLS) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.SkipCertVerify,
	}
	var errs []error
	if t.RootCAsFile != "" {
		pem, err := os.ReadFile(t.RootCAsFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.root_cas_file: %w", err))
		} else {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("kafka.tls.root_cas_file: %s holds no PEM certificate", t.RootCAsFile))
			}
		}
	}
	for i, c := range t.ClientCerts {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.client_certs[%d]: %w", i, err))
			continue
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, errors.Join(errs...)
}

// brokerSecurity is what the embedded broker requires of its clients.
type brokerSecurity struct {
	cert  *tls.Certificate
	users []User
	acls  bool
}

// User is a SASL user of the embedded broker with the ACLs it gets when
// ACLs are on (each builder allowing the user's principal).
type User struct {
	Mechanism, Name, Password string
	ACLs                      []*kadm.ACLBuilder
}

// BrokerTLS makes the embedded broker accept TLS connections only, with
// cert.
func BrokerTLS(cert tls.Certificate) BrokerOpt {
	return func(c *brokerConfig) { c.sec.cert = &cert }
}

// BrokerUsers makes the embedded broker require SASL from these users;
// with acls each user may do what its ACLs allow and nothing else.
func BrokerUsers(acls bool, users ...User) BrokerOpt {
	return func(c *brokerConfig) { c.sec.users, c.sec.acls = users, acls }
}

// siteSecurity turns the site's embedded_tls, embedded_users and
// embedded_acls into broker options: each user's password is read once,
// at start (changing one needs a broker restart), and its role becomes
// its ACLs (see pipeline.RolePipeline and pipeline.RoleDevice).
func siteSecurity(p *pipeline.Pipeline, k *pipeline.Kafka) ([]BrokerOpt, error) {
	var (
		opts []BrokerOpt
		errs []error
	)
	if t := k.EmbeddedTLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.embedded_tls: %w", err))
		} else {
			opts = append(opts, BrokerTLS(cert))
		}
	}
	var users []User
	for i, u := range k.EmbeddedUsers {
		pw, err := Secret(u.PasswordFile, u.PasswordEnv)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.embedded_users[%d] (%s): %w", i, u.Username, err))
			continue
		}
		principal := "User:" + u.Username
		var acls []*kadm.ACLBuilder
		switch u.Role {
		case pipeline.RolePipeline:
			acls = append(acls,
				kadm.NewACLs().Allow(principal).AllowHosts().Topics(p.Name+".").Groups(p.Name+".").
					ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpAll))
		case pipeline.RoleDevice:
			acls = append(acls,
				kadm.NewACLs().Allow(principal).AllowHosts().Topics(p.InputTopic(p.Tiers[0].Name)).
					ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpWrite))
		}
		users = append(users, User{Mechanism: u.Mechanism, Name: u.Username, Password: pw, ACLs: acls})
	}
	if len(users) > 0 {
		opts = append(opts, BrokerUsers(k.EmbeddedACLs, users...))
	}
	return opts, errors.Join(errs...)
}

// apply adds to kopts what sec requires, and an internal
// superuser with a random password when ACLs are on: the broker creates
// the users' ACLs through it once listening (a restored data directory
// skips kfake's seeding). The superuser's password lives in this
// process's memory only.
func (sec *brokerSecurity) apply(kopts []kfake.Opt) ([]kfake.Opt, *User, error) {
	if sec.cert != nil {
		kopts = append(kopts, kfake.TLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*sec.cert}}))
	}
	if len(sec.users) == 0 {
		return kopts, nil, nil
	}
	kopts = append(kopts, kfake.EnableSASL())
	for _, u := range sec.users {
		kopts = append(kopts, kfake.User(u.Mechanism, u.Name, u.Password))
	}
	if !sec.acls {
		return kopts, nil, nil
	}
	b := make([]byte, 32)
	rand.Read(b)
	name := make([]byte, 6)
	rand.Read(name)
	admin := &User{Mechanism: pipeline.SASLScramSHA512, Name: "ddnn-broker-" + hex.EncodeToString(name), Password: hex.EncodeToString(b)}
	kopts = append(kopts, kfake.Superuser(admin.Mechanism, admin.Name, admin.Password), kfake.EnableACLs())
	return kopts, admin, nil
}

// selfClient is a client of the broker at addr from within its own
// process: a TLS broker is dialled trusting exactly its own certificate.
func (sec *brokerSecurity) selfClient(addr string, opts ...kgo.Opt) (*kgo.Client, error) {
	opts = append(opts, kgo.SeedBrokers(addr))
	if sec.cert != nil {
		leaf := sec.cert.Certificate[0]
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the exact check below
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
					return errors.New("not the embedded broker's certificate")
				}
				return nil
			},
		}))
	}
	return kgo.NewClient(opts...)
}

// advertiseHandshakeV0 makes the broker list SaslHandshake from version 0,
// as Apache Kafka does. kfake serves v1 only and says so; librdkafka
// (kcat, confluent-kafka-*) then decides the broker has no SASL handshake
// and refuses to authenticate with SCRAM, although it would send v1. The
// broker's own ApiVersions answer is fetched once and served again with
// that one change to requests up to its version; later versions, whose
// answers depend on the request, stay kfake's.
func (sec *brokerSecurity) advertiseHandshakeV0(ctx context.Context, c *kfake.Cluster, addr string) error {
	cl, err := sec.selfClient(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "ddnn", "1"
	kresp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	if err := kerr.ErrorForCode(kresp.ErrorCode); err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	for i := range kresp.ApiKeys {
		if kresp.ApiKeys[i].ApiKey == int16(kmsg.SASLHandshake) {
			kresp.ApiKeys[i].MinVersion = 0
		}
	}
	template := *kresp
	c.ControlKey(int16(kmsg.ApiVersions), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if kreq.GetVersion() > 3 {
			return nil, nil, false
		}
		resp := template
		resp.Version = kreq.GetVersion()
		return &resp, nil, true
	})
	return nil
}

// createACLs connects to the broker at addr as admin and creates the
// users' ACLs.
func (sec *brokerSecurity) createACLs(ctx context.Context, addr string, admin *User) error {
	cl, err := sec.selfClient(addr, kgo.SASL(scram.Auth{User: admin.Name, Pass: admin.Password}.AsSha512Mechanism()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, u := range sec.users {
		for _, b := range u.ACLs {
			res, err := adm.CreateACLs(ctx, b)
			if err != nil {
				return fmt.Errorf("acls of %s: %w", u.Name, err)
			}
			for _, r := range res {
				if r.Err != nil {
					return fmt.Errorf("acls of %s: %w%s", u.Name, r.Err, detail(r.ErrMessage))
				}
			}
		}
	}
	return nil
}
