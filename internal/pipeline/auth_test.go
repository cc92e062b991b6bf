package pipeline

import (
	"path/filepath"
	"testing"
)

// TestServiceTokenPath: the service token file is resolved once, against
// the YAML's directory, to an absolute path; "" when auth.service is not
// token.
func TestServiceTokenPath(t *testing.T) {
	cwd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir string
		auth      Auth
		want      string
	}{
		{"relative to a relative YAML dir", "deploy", Auth{Service: AuthToken, ServiceTokenFile: "service.token"}, filepath.Join(cwd, "deploy", "service.token")},
		{"absolute", "deploy", Auth{Service: AuthToken, ServiceTokenFile: "/etc/ddnn/service.token"}, "/etc/ddnn/service.token"},
		{"none", "deploy", Auth{Service: AuthNone}, ""},
		{"unset", "", Auth{}, ""},
	} {
		p := &Pipeline{Dir: c.dir, Auth: c.auth}
		if got := p.ServiceTokenPath(); got != c.want {
			t.Errorf("%s: ServiceTokenPath() = %q, want %q", c.name, got, c.want)
		}
	}
}
