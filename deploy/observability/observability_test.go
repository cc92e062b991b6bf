// Package observability holds no code: its tests check the Prometheus
// scrape configs, alert rules and their unit tests in this directory with
// promtool (Debian's prometheus package). internal/e2e runs them against a
// live ddnn up and a real Prometheus (TestPrometheusAgainstUp).
package observability

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// promtool runs promtool with args in dir, skipping the test when promtool
// is not installed.
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus): ", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRules(t *testing.T) {
	out := promtool(t, ".", "check", "rules", "rules.yml")
	if !strings.Contains(out, "SUCCESS: 7 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}
}

// TestRulesUnitTests runs rules_test.yml: every alert fires where it should
// and not where it should not.
func TestRulesUnitTests(t *testing.T) {
	promtool(t, ".", "test", "rules", "rules_test.yml")
}

// TestConfigUp checks the ddnn up scrape config and the rules it loads.
func TestConfigUp(t *testing.T) {
	promtool(t, ".", "check", "config", "prometheus.yml")
}

// TestConfigRoles checks the roles' scrape config with the service token
// file it names in place (a copy of the directory, the path rewritten).
func TestConfigRoles(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "service.token")
	if err := os.WriteFile(token, []byte("ddnn_svc_0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prometheus-roles.yml", "rules.yml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/etc/ddnn/service.token", token)
		if name == "prometheus-roles.yml" && s == string(b) {
			t.Fatal("prometheus-roles.yml no longer names /etc/ddnn/service.token")
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	promtool(t, dir, "check", "config", "prometheus-roles.yml")
}
