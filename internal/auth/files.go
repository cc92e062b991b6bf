package auth

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// CredentialFile is a certificate, key, token or password file a setting
// of the pipeline names.
type CredentialFile struct {
	// Setting is where the pipeline names it, e.g. funnel.tls.cert_file.
	Setting string
	Path    string
	// check says whether the contents are usable.
	check func([]byte) error
}

// Check reads the file and says why it cannot be used: unreadable, or
// not what its setting wants (no PEM block, no token, an empty password).
func (f CredentialFile) Check() error {
	b, err := os.ReadFile(f.Path)
	if err == nil {
		err = f.check(b)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", f.Setting, f.Path, err)
	}
	return nil
}

// SiteCredentialFiles lists the credential files the parts of site read:
// the service token file (serviceTokens, "" for none: `ddnn up` may make
// its own), the device files (auth), the funnel's TLS files and the Kafka
// clients' and embedded broker's TLS and SASL files. Paths are resolved as
// the parts resolve them.
func SiteCredentialFiles(site *pipeline.SiteView, serviceTokens string) []CredentialFile {
	p := site.Pipeline
	var fs []CredentialFile
	add := func(setting, path string, check func([]byte) error) {
		if path != "" {
			fs = append(fs, CredentialFile{Setting: setting, Path: path, check: check})
		}
	}
	add("auth.service_token_file", serviceTokens, func(b []byte) error { return (&Tokens{}).parse(b) })
	if p.Auth.DevicesFile != "" {
		add("auth.devices_file", p.Path(p.Auth.DevicesFile), func(b []byte) error { _, err := parseDevices(b); return err })
	}
	if p.Auth.DevicesPSKKeyFile != "" {
		add("auth.devices_psk_key_file", p.Path(p.Auth.DevicesPSKKeyFile), nonEmpty)
	}
	if t := site.Funnel.TLS; t.Enabled() {
		add("funnel.tls.cert_file", p.Path(t.CertFile), hasPEM)
		add("funnel.tls.key_file", p.Path(t.KeyFile), hasPEM)
		if t.ClientCAFile != "" {
			add("funnel.tls.client_ca_file", p.Path(t.ClientCAFile), hasPEM)
		}
	}
	k := site.Kafka
	if k.TLS != nil {
		add("kafka.tls.root_cas_file", k.TLS.RootCAsFile, hasPEM)
		for i, c := range k.TLS.ClientCerts {
			add(fmt.Sprintf("kafka.tls.client_certs[%d].cert_file", i), c.CertFile, hasPEM)
			add(fmt.Sprintf("kafka.tls.client_certs[%d].key_file", i), c.KeyFile, hasPEM)
		}
	}
	for i, s := range k.SASL {
		add(fmt.Sprintf("kafka.sasl[%d].password_file", i), s.PasswordFile, nonEmpty)
		add(fmt.Sprintf("kafka.sasl[%d].token_file", i), s.TokenFile, nonEmpty)
	}
	if k.Embedded() {
		if k.EmbeddedTLS != nil {
			add("kafka.embedded_tls.cert_file", k.EmbeddedTLS.CertFile, hasPEM)
			add("kafka.embedded_tls.key_file", k.EmbeddedTLS.KeyFile, hasPEM)
		}
		for i, u := range k.EmbeddedUsers {
			add(fmt.Sprintf("kafka.embedded_users[%d].password_file", i), u.PasswordFile, nonEmpty)
		}
	}
	return fs
}

func hasPEM(b []byte) error {
	if blk, _ := pem.Decode(b); blk == nil {
		return errors.New("no PEM block in it")
	}
	return nil
}

func nonEmpty(b []byte) error {
	if strings.TrimSpace(string(b)) == "" {
		return errors.New("it is empty")
	}
	return nil
}

// filesDesc is the gauge FilesCollector reports.
var filesDesc = prometheus.NewDesc("ddnn_auth_file_unreadable",
	"1 while a credential file a setting names (certificate, key, CA, token, devices, password) cannot be read or holds nothing usable, checked at every scrape; a part that reads it at its next start or reload fails.",
	[]string{"setting"}, nil)

// FilesCollector reports ddnn_auth_file_unreadable{setting} for each of
// files, reading them at every collection (they are small), so a file
// removed, made unreadable or emptied under a running pipeline shows
// before a part restarts on it.
type FilesCollector struct{ files []CredentialFile }

// NewFilesCollector checks files at each scrape.
func NewFilesCollector(files []CredentialFile) *FilesCollector { return &FilesCollector{files} }

// Describe implements prometheus.Collector.
func (c *FilesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- filesDesc }

// Collect implements prometheus.Collector.
func (c *FilesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.files {
		v := 0.0
		if f.Check() != nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(filesDesc, prometheus.GaugeValue, v, f.Setting)
	}
}
