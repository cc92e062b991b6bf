package kafkatest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The listener names of a cluster with Security.
const (
	saslListener = "SASL_SSL"
	ctrlListener = "CONTROLLER"
)

// writeSecurityFiles makes the CA and the nodes' certificate, the PEM
// keystore (key, certificate, CA) and the admin's password and client
// properties, in the cluster's directory.
func (c *Cluster) writeSecurityFiles() error {
	dir := filepath.Join(c.dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("kafka cluster: %w", err)
	}
	certs, err := WriteCerts(dir)
	if err != nil {
		return fmt.Errorf("kafka cluster: certificates: %w", err)
	}
	c.certs = certs
	// The nodes' principal on the controller listener, a super user.
	if c.nodePrincipal, err = principal(certs.Cert); err != nil {
		return fmt.Errorf("kafka cluster: %w", err)
	}
	var ks []byte
	for _, f := range []string{certs.Key, certs.Cert, certs.CA} {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("kafka cluster: %w", err)
		}
		ks = append(ks, b...)
	}
	if err := os.WriteFile(c.keystore(), ks, 0o600); err != nil {
		return fmt.Errorf("kafka cluster: %w", err)
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	c.adminPassword = hex.EncodeToString(pw)
	props := "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n" +
		"sasl.jaas.config=" + jaas(AdminUser, c.adminPassword) + "\n" +
		"ssl.truststore.type=PEM\nssl.truststore.location=" + certs.CA + "\n"
	if err := os.WriteFile(c.AdminProperties(), []byte(props), 0o600); err != nil {
		return fmt.Errorf("kafka cluster: %w", err)
	}
	return nil
}

func (c *Cluster) keystore() string { return filepath.Join(c.dir, "tls", "keystore.pem") }

// AdminProperties is a Java client properties file that connects as
// AdminUser (for a Kafka tool's --command-config); only with Security.
func (c *Cluster) AdminProperties() string { return filepath.Join(c.dir, "tls", "admin.properties") }

// Certs are the CA, certificate and key the nodes use; only with
// Security. Clients verify the brokers with Certs().CA.
func (c *Cluster) Certs() Certs { return c.certs }

// AdminPassword is AdminUser's password; only with Security.
func (c *Cluster) AdminPassword() string { return c.adminPassword }

func jaas(user, password string) string {
	return fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, password)
}

// securityProps are the server.properties of node n with Security.
func (c *Cluster) securityProps(n *Node) map[string]string {
	sasl := strings.ToLower(saslListener)
	p := map[string]string{
		"listeners":                      saslListener + "://" + n.Addr + "," + ctrlListener + "://" + n.ctrlAddr,
		"advertised.listeners":           saslListener + "://" + n.Addr,
		"inter.broker.listener.name":     saslListener,
		"listener.security.protocol.map": saslListener + ":SASL_SSL," + ctrlListener + ":SSL",
		// SCRAM-SHA-512 only, between the brokers too.
		"sasl.enabled.mechanisms":                                          "SCRAM-SHA-512",
		"listener.name." + sasl + ".sasl.enabled.mechanisms":               "SCRAM-SHA-512",
		"sasl.mechanism.inter.broker.protocol":                             "SCRAM-SHA-512",
		"listener.name." + sasl + ".scram-sha-512.sasl.jaas.config":        jaas(AdminUser, c.adminPassword),
		"ssl.keystore.type":                                                "PEM",
		"ssl.keystore.location":                                            c.keystore(),
		"ssl.truststore.type":                                              "PEM",
		"ssl.truststore.location":                                          c.certs.CA,
		"listener.name.controller.ssl.client.auth":                         "required",
		"ssl.enabled.protocols":                                            "TLSv1.3,TLSv1.2",
		"listener.name." + sasl + ".ssl.endpoint.identification.algorithm": "https",
	}
	if c.cfg.Security.ACLs {
		p["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
		p["super.users"] = "User:" + AdminUser + ";" + c.nodePrincipal
	}
	return p
}

// scramArgs are the storage tool's arguments that create the SCRAM users
// (the admin and Security.Users) in the bootstrap metadata.
func (c *Cluster) scramArgs() []string {
	if c.cfg.Security == nil {
		return nil
	}
	users := map[string]string{AdminUser: c.adminPassword}
	maps.Copy(users, c.cfg.Security.Users)
	var args []string
	for _, u := range slices.Sorted(maps.Keys(users)) {
		args = append(args, "--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", u, users[u]))
	}
	return args
}

// TLSConfig trusts the cluster's CA; only with Security.
func (c *Cluster) TLSConfig() (*tls.Config, error) {
	b, err := os.ReadFile(c.certs.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no certificate", c.certs.CA)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// AdminOpts are the franz-go options that connect to a cluster with
// Security as AdminUser (TLS with the cluster's CA, SCRAM-SHA-512).
func (c *Cluster) AdminOpts() ([]kgo.Opt, error) {
	cfg, err := c.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("kafka cluster: %w", err)
	}
	auth := scram.Auth{User: AdminUser, Pass: c.adminPassword}
	return []kgo.Opt{kgo.DialTLSConfig(cfg), kgo.SASL(auth.AsSha512Mechanism())}, nil
}

// AllowPrefix grants user ALL on the topics and consumer groups whose
// names start with prefix (prefixed ACLs), what a pipeline named
// <prefix without the dot> needs; only with Security.ACLs.
func (c *Cluster) AllowPrefix(ctx context.Context, user, prefix string) error {
	adm, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	b := kadm.NewACLs().Allow("User:" + user).AllowHosts().
		Topics(prefix).Groups(prefix).ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpAll)
	res, err := adm.CreateACLs(ctx, b)
	if err != nil {
		return fmt.Errorf("kafka cluster: ACLs for %s: %w", user, err)
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("kafka cluster: ACL %s on %v %s: %w", user, r.Type, r.Name, r.Err)
		}
	}
	return nil
}
