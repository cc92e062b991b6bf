package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// securePipeline is deploy/examples/secure.yaml written with free ports and
// its secrets made by scripts/secure-demo.sh.
type securePipeline struct {
	file, dir                       string
	funnel, delivery, kafka, admin  string
	token                           string // dev-1's
	serviceToken, kafkaPassword, ca string
}

func writeSecure(t *testing.T) securePipeline {
	t.Helper()
	sp := securePipeline{dir: t.TempDir(), funnel: proctest.FreeAddr(t), delivery: proctest.FreeAddr(t), kafka: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
	y := testsupport.Shipped(t, "deploy/examples/secure.yaml")
	y = strings.Replace(y, "embedded_listen: 127.0.0.1:9092", "embedded_listen: "+sp.kafka, 1)
	y = strings.Replace(y, "listen: 127.0.0.1:8443", "listen: "+sp.funnel, 1)
	y = strings.Replace(y, "delivery_listen: 127.0.0.1:8081", "delivery_listen: "+sp.delivery, 1)
	y += "admin: {listen: " + sp.admin + "}\n"
	sp.file = filepath.Join(sp.dir, "secure.yaml")
	if err := os.WriteFile(sp.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root(t), "scripts/secure-demo.sh"), filepath.Join(sp.dir, "secure"))
	cmd.Env = append(os.Environ(), "DDNN="+ddnn)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("secure-demo.sh: %v", err)
	}
	sp.token = strings.TrimSpace(string(out))
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(sp.dir, "secure", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, l := range strings.Split(read("service.token"), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			sp.serviceToken = l
		}
	}
	sp.kafkaPassword = strings.TrimSpace(read("kafka.password"))
	sp.ca = filepath.Join(sp.dir, "secure/certs/ca.pem")
	if !strings.HasPrefix(sp.token, "ddnn_dev_") || sp.serviceToken == "" || sp.kafkaPassword == "" {
		t.Fatalf("secrets: token %q, service token %q", sp.token, sp.serviceToken)
	}
	return sp
}

// curl runs curl against the HTTPS device listener with the development CA
// and returns the status code and body.
func (sp securePipeline) curl(t *testing.T, path string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"-s", "-w", "\n%{http_code}", "--cacert", sp.ca, "-H", "Content-Type: application/octet-stream",
		"--data-binary", "@" + filepath.Join(sp.dir, "image"), "https://" + sp.funnel + path}, extra...)
	out, err := exec.Command("curl", args...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", extra, err)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndex(s, "\n")
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:max(0, i)]
}

// TestSecure is the trust-boundaries acceptance run on
// deploy/examples/secure.yaml: HTTPS ingest with device tokens or client
// certificates, the delivery zone behind the service token, the embedded
// broker on TLS with SCRAM-SHA-512 and ACLs.
func TestSecure(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (scripts/deps.sh installs it)")
	}
	sp := writeSecure(t)
	if err := os.WriteFile(filepath.Join(sp.dir, "image"), testSet(t).Samples[0], 0o644); err != nil {
		t.Fatal(err)
	}
	up := start(t, "up", "-f", sp.file, "--ephemeral")
	testsupport.WaitFor(t, 90*time.Second, "the secure pipeline", func() bool {
		select {
		case <-up.exited:
			t.Fatalf("ddnn up exited: %v\n%s", up.err, up.out.String())
		default:
		}
		return strings.Contains(up.out.String(), "is up")
	})
	bearer := func(tok string) []string { return []string{"-H", "Authorization: Bearer " + tok} }

	t.Run("device zone serves ingest only", func(t *testing.T) {
		for _, path := range []string{"/v1/results", "/v1/tiers/fog", "/v1/drain"} {
			if code, body := sp.curl(t, path, bearer(sp.token)...); code/100 == 2 {
				t.Errorf("POST %s on the device listener: %d %s", path, code, body)
			}
		}
		if code, body := sp.curl(t, "/v1/ingest", bearer(sp.token)...); code != http.StatusAccepted {
			t.Errorf("ingest after the internal routes were tried: %d %s", code, body)
		}
	})
	t.Run("delivery zone wants the service token", func(t *testing.T) {
		for _, tok := range []string{"", "ddnn_svc_not-the-token-at-all-xxxxxxxxxxxx", sp.token} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+sp.delivery+"/v1/results", strings.NewReader("[]"))
			req.Header.Set("Content-Type", "application/json")
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("delivery with %.12q: %d, WWW-Authenticate %q; want 401", tok, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	})
	t.Run("device credentials", func(t *testing.T) {
		out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-D", "-", "--cacert", sp.ca, "-H", "Content-Type: application/octet-stream",
			"--data-binary", "@"+filepath.Join(sp.dir, "image"), "https://"+sp.funnel+"/v1/ingest").Output()
		if err != nil || !strings.Contains(string(out), " 401") || !strings.Contains(strings.ToLower(string(out)), `www-authenticate: bearer realm="ddnn"`) {
			t.Errorf("no token: %v\n%s", err, out)
		}
		if code, body := sp.curl(t, "/v1/ingest", bearer("ddnn_dev_wrong")...); code != http.StatusUnauthorized {
			t.Errorf("wrong token: %d %s", code, body)
		}
		if code, body := sp.curl(t, "/v1/ingest", append(bearer(sp.token), "-H", "X-Device-Id: dev-2")...); code != http.StatusForbidden {
			t.Errorf("dev-1's token claiming dev-2: %d %s", code, body)
		}
		code, body := sp.curl(t, "/v1/ingest", "--cert", filepath.Join(sp.dir, "secure/certs/dev-1.pem"), "--key", filepath.Join(sp.dir, "secure/certs/dev-1-key.pem"))
		if code != http.StatusAccepted {
			t.Errorf("client certificate: %d %s", code, body)
		}
		var byCert struct{ ID string }
		json.Unmarshal([]byte(body), &byCert)

		// A device added now can send; revoked, it is refused within 2 s.
		creds := filepath.Join(sp.dir, "secure/devices.yaml")
		out, err = exec.Command(ddnn, "devices", "add", "-f", creds, "dev-2").Output()
		if err != nil {
			t.Fatal(err)
		}
		tok2 := strings.TrimSpace(string(out))
		testsupport.WaitFor(t, 5*time.Second, "dev-2 accepted", func() bool { c, _ := sp.curl(t, "/v1/ingest", bearer(tok2)...); return c == http.StatusAccepted })
		if out, err := exec.Command(ddnn, "devices", "revoke", "-f", creds, "dev-2").CombinedOutput(); err != nil {
			t.Fatalf("revoke: %v %s", err, out)
		}
		revoked := time.Now()
		testsupport.WaitFor(t, 5*time.Second, "dev-2 refused", func() bool { c, _ := sp.curl(t, "/v1/ingest", bearer(tok2)...); return c == http.StatusUnauthorized })
		if took := time.Since(revoked); took > 2*time.Second {
			t.Errorf("the revoked token was refused after %s, want within 2s", took)
		} else {
			t.Logf("the revoked token was refused %s after ddnn devices revoke", took.Round(time.Millisecond))
		}
		out, _ = exec.Command(ddnn, "devices", "list", "-f", creds).Output()
		if !strings.Contains(string(out), "dev-1") || !strings.Contains(string(out), "dev-2") {
			t.Errorf("devices list:\n%s", out)
		}

		// The results say who sent: the credential's device, whatever was
		// claimed.
		out, err = exec.Command(ddnn, "results", "-f", sp.file, "--json", "--count", "4", "--timeout", "20s").Output()
		if err != nil {
			t.Fatalf("ddnn results: %v", err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			var r struct{ ID, Device string }
			json.Unmarshal(line, &r)
			if r.Device != "dev-1" && r.Device != "dev-2" {
				t.Errorf("result %s from device %q", r.ID, r.Device)
			}
			if r.ID == byCert.ID && r.Device != "dev-1" {
				t.Errorf("the client certificate's message came from %q", r.Device)
			}
		}
	})
	t.Run("no secret on a command line or in the output", func(t *testing.T) {
		secrets := map[string]string{"the Kafka password": sp.kafkaPassword, "the service token": sp.serviceToken, "dev-1's token": sp.token}
		ps, err := exec.Command("ps", "-eo", "args").Output()
		if err != nil {
			t.Fatal(err)
		}
		cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		var all bytes.Buffer
		all.Write(ps)
		for _, c := range cmdlines {
			b, _ := os.ReadFile(c)
			all.Write(b)
		}
		for what, s := range secrets {
			if strings.Contains(all.String(), s) {
				t.Errorf("%s is on a command line", what)
			}
			if strings.Contains(up.out.String(), s) {
				t.Errorf("%s is in ddnn up's output or announcement", what)
			}
		}
		t.Logf("checked %d command lines and %d bytes of output", len(cmdlines), len(up.out.String()))
	})
}

// TestProtectedMode: a device or delivery listener reachable from outside
// this machine without authentication refuses to start and names the
// setting that opts out.
func TestProtectedMode(t *testing.T) {
	tp := writePipeline(t, "protected", 1, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:0"}, "auth.devices: none"},
		{[]string{"--delivery-listen", "0.0.0.0:0"}, "auth.service: none"},
	} {
		out, err := exec.Command(ddnn, append([]string{"funnel", "-f", tp.file}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "reachable from outside this machine") {
			t.Errorf("funnel %v: %v\n%s", tc.args, err, out)
		}
	}
}
