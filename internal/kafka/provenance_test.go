package kafka

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProvenance: a broker that requires SASL refuses a data directory
// whose records a broker without it wrote (or an older version, which
// recorded nothing), until --trust-data; a directory keeps the least
// security any broker that used it required.
func TestProvenance(t *testing.T) {
	dir := t.TempDir()
	users := BrokerUsers(false, User{Mechanism: "SCRAM-SHA-256", Name: "u", Password: "a password"})
	start := func(opts ...BrokerOpt) error {
		t.Helper()
		b, err := StartBroker("127.0.0.1:0", 1, []string{"t"}, nil, append([]BrokerOpt{DataDir(dir)}, opts...)...)
		if err == nil {
			b.Close()
		}
		return err
	}
	refused := func(what string, opts ...BrokerOpt) {
		t.Helper()
		err := start(opts...)
		if err == nil || !strings.Contains(err.Error(), "holds records written by a broker without SASL") || !strings.Contains(err.Error(), "--trust-data") {
			t.Fatalf("%s: %v, want a refusal naming SASL and --trust-data", what, err)
		}
	}
	for _, step := range []struct {
		what string
		opts []BrokerOpt
	}{
		{"a new directory, with SASL", []BrokerOpt{users}},
		{"again with SASL", []BrokerOpt{users}},
		{"without SASL", nil},
	} {
		if err := start(step.opts...); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
	}
	refused("with SASL after a start without", users)
	if err := start(users, TrustData()); err != nil {
		t.Fatalf("with SASL and TrustData: %v", err)
	}
	if err := start(users); err != nil {
		t.Fatalf("with SASL after it was trusted: %v", err)
	}
	// A directory an older version wrote records nothing of its security.
	if err := os.Remove(filepath.Join(dir, securityFile)); err != nil {
		t.Fatal(err)
	}
	refused("with SASL on an older directory", users)
	if err := start(); err != nil {
		t.Fatalf("without SASL on an older directory: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, securityFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, want it, mode 0600", securityFile, err)
	}
	refused("with SASL after that", users)
}
