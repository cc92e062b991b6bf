package up

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

func loadPipeline(t *testing.T, path string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func siteNames(ss []pipeline.Site) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

func TestCheckLinkURLs(t *testing.T) {
	continuum := loadPipeline(t, "../../deploy/examples/continuum.yaml")
	mono := *continuum
	mono.Tiers = slices.Clone(continuum.Tiers)
	if err := mono.PlaceAllOn("cloud"); err != nil {
		t.Fatal(err)
	}
	single := loadPipeline(t, "../../deploy/pipeline.yaml")
	link := func(from, to string) map[pipeline.Link]string {
		return map[pipeline.Link]string{{From: from, To: to}: "http://127.0.0.1:1"}
	}
	for _, tc := range []struct {
		name      string
		p         *pipeline.Pipeline
		urls      map[pipeline.Link]string
		placement string
		want      string // "" for no error
	}{
		{"none", continuum, nil, "", ""},
		{"a link of the pipeline", continuum, link("edge", "fog"), "", ""},
		{"no such link", continuum, link("cloud", "fog"), "",
			`pipeline "fmnist" has no link cloud->fog (links: edge->fog, fog->cloud, fog->edge, cloud->edge)`},
		{"gone with every tier on one site", &mono, link("edge", "fog"), "cloud",
			`pipeline "fmnist" has no link edge->fog (links with every tier on site "cloud": cloud->edge)`},
		{"a pipeline without links", single, link("edge", "fog"), "",
			`pipeline "fmnist" has no link edge->fog (links: none)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLinkURLs(tc.p, tc.urls, tc.placement)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var le *LinkError
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want a *LinkError", err)
			}
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestSitesToRun(t *testing.T) {
	continuum := loadPipeline(t, "../../deploy/examples/continuum.yaml")
	single := loadPipeline(t, "../../deploy/pipeline.yaml")
	for _, tc := range []struct {
		name, site string
		p          *pipeline.Pipeline
		want       []string
		wantErr    string
	}{
		{"every site", "", continuum, []string{"edge", "fog", "cloud"}, ""},
		{"one site", "fog", continuum, []string{"fog"}, ""},
		{"unknown site", "moon", continuum, nil, `site "moon" unknown (sites: edge, fog, cloud)`},
		{"no sites declared", "", single, []string{single.Sites()[0].Name}, ""},
		{"a site of a pipeline without sites", "edge", single, nil, `site "edge": pipeline "fmnist" declares no sites: (run it without a site)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sites, err := sitesToRun(tc.p, tc.site)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := siteNames(sites); !slices.Equal(got, tc.want) {
				t.Errorf("sites %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSkipIdle(t *testing.T) {
	p := loadPipeline(t, "../../deploy/examples/continuum.yaml")
	if err := p.PlaceAllOn("cloud"); err != nil {
		t.Fatal(err)
	}
	var announce bytes.Buffer
	got := skipIdle(Config{Pipeline: p, Announce: &announce}, p.Sites(), "cloud")
	// The results stay on the edge, which the cloud's exits reach.
	if names := siteNames(got); !slices.Equal(names, []string{"edge", "cloud"}) {
		t.Errorf("sites %v, want edge and cloud", names)
	}
	want := `pipeline "fmnist" site "fog" is skipped: nothing runs there in the monolith baseline, every tier on site "cloud" and the results on "edge"` + "\n"
	if announce.String() != want {
		t.Errorf("announced %q, want %q", announce.String(), want)
	}
}

func TestProcesses(t *testing.T) {
	for n, want := range map[int]string{0: "0 processes", 1: "1 process", 3: "3 processes"} {
		if got := processes(n); got != want {
			t.Errorf("processes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLocalServiceToken(t *testing.T) {
	p := loadPipeline(t, "../../deploy/pipeline.yaml")
	t.Chdir(t.TempDir())
	want, _ := filepath.Abs(filepath.Join(".run", "fmnist", "service.token"))
	// A candidate a crashed start of this pid left behind is replaced.
	if err := os.MkdirAll(filepath.Dir(want), 0o700); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s.%d", want, os.Getpid())
	if err := os.WriteFile(stale, []byte("stale\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path, err := localServiceToken(p)
	if err != nil {
		t.Fatal(err)
	}
	if path != want {
		t.Errorf("token at %s, want %s", path, want)
	}
	token, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	// The file is usable as it is: curl -H "Authorization: Bearer $(cat
	// FILE)", Prometheus's bearer_token_file.
	if !regexp.MustCompile(`^` + auth.ServiceTokenPrefix + `[A-Za-z0-9_-]+\n$`).Match(token) {
		t.Errorf("the token file holds %q, want a new service token alone on its line", token)
	}
	for path, mode := range map[string]os.FileMode{want: 0o600, filepath.Dir(want): 0o700 | os.ModeDir} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode(), mode)
		}
	}
	if left, _ := filepath.Glob(want + ".*"); len(left) > 0 {
		t.Errorf("candidates left beside the token: %v", left)
	}
	// A later start reuses it.
	again, err := localServiceToken(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(again); again != want || !bytes.Equal(b, token) {
		t.Errorf("a later start got %s, want the same token at %s", again, want)
	}
	// A file an older version wrote, with a comment first, in a directory
	// others could enter, keeps its token and loses the comment.
	old := append([]byte("# ddnn service token: every part of the pipeline sends the first token and accepts each.\n"), token...)
	if err := os.WriteFile(want, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := localServiceToken(p); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(want); !bytes.Equal(b, token) {
		t.Errorf("an older token file became %q, want %q", b, token)
	}
	if st, _ := os.Stat(filepath.Dir(want)); st.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v after the start, want 0700", filepath.Dir(want), st.Mode())
	}
}

// TestFromHere: the announcement's hints name the pipeline's files as a
// person in the working directory types them, not relative to the YAML.
func TestFromHere(t *testing.T) {
	root, _ := filepath.Abs("../..")
	p := loadPipeline(t, filepath.Join(root, "deploy/examples/secure.yaml"))
	t.Chdir(root)
	if got := p.PathFromHere(p.Auth.DevicesFile); got != "deploy/examples/secure/devices.yaml" {
		t.Errorf("from the checkout: %q, want deploy/examples/secure/devices.yaml", got)
	}
	t.Chdir(filepath.Join(root, "deploy/examples"))
	if got := p.PathFromHere(p.Auth.DevicesFile); got != "secure/devices.yaml" {
		t.Errorf("from the YAML's directory: %q, want secure/devices.yaml", got)
	}
	t.Chdir(t.TempDir())
	if got, want := p.PathFromHere(p.Auth.DevicesFile), filepath.Join(root, "deploy/examples/secure/devices.yaml"); got != want {
		t.Errorf("from elsewhere: %q, want %q", got, want)
	}
}

// TestSecureExampleOwnData: the secure example and the plain sample, both
// named fmnist and run from the checkout, keep their broker data apart.
func TestSecureExampleOwnData(t *testing.T) {
	root, _ := filepath.Abs("../..")
	t.Chdir(root)
	plain, _ := loadPipeline(t, "deploy/pipeline.yaml").BrokerDataDir()
	secure, _ := loadPipeline(t, "deploy/examples/secure.yaml").BrokerDataDir()
	if plain == secure {
		t.Errorf("both keep their broker data in %s", plain)
	}
}
