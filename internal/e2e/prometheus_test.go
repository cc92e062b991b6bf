package e2e

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestPrometheusAgainstUp runs the shipped continuum (three sites, the edge
// scaled) under ddnn up and a real Prometheus scraping every site's admin
// address with the shipped scrape config and rules (deploy/observability),
// sends images, and checks that every dashboard query, every variable
// and every alert expression (with its thresholds stripped, and each of
// its selectors) returns data. Then it kills the cloud tier's only
// replica with its model gone, so it cannot start again, and checks that
// DdnnTierDown fires for the cloud, which it did not before. The rules'
// for: durations are 0s in the test's copy; the expressions are the
// shipped ones.
func TestPrometheusAgainstUp(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (apt-get install prometheus): ", err)
	}
	began := time.Now()
	cp := writeObserved(t, "obs")
	p := start(t, "up", "-f", cp.file)
	waitSites(t, cp.continuum, p)
	upReady := time.Since(began)

	prom := startPrometheus(t, promBin, cp)
	promReady := time.Since(began)
	// Traffic before the first scrape would leave no increase to see.
	testsupport.WaitFor(t, 30*time.Second, "Prometheus scraped every site and every funnel's delivery zone", func() bool {
		return len(prom.query(t, `up{job="ddnn-up"} == 1`)) == 3 && len(prom.query(t, `up{job="ddnn-funnel"} == 1`)) == 3
	})
	firstScrape := time.Since(began)
	sendHTTP(t, cp.funnel["edge"], testSet(t).Samples[:300], "obs-a-", 4)
	// Results cross back to the edge: every link carried something.
	testsupport.WaitFor(t, 60*time.Second, "Prometheus scraped traffic on every link", func() bool {
		return len(prom.query(t, `ddnn_link_messages_total > 0`)) == 4
	})
	scraped := time.Since(began)

	// The roles' funnel job reads the funnels' own metrics with the token
	// (its scrapes run on their own schedule: wait for one after the
	// traffic).
	prom.waitData(t, "the ddnn-funnel job of prometheus-roles.yml scraping funnel request counts", `ddnn_funnel_requests_total{job="ddnn-funnel", process=""}`, hasNumber)
	dash := dashboardQueries(t)
	for _, q := range dash {
		prom.waitData(t, "dashboard query", q, hasNumber)
	}
	for label, want := range map[string][]string{"pipeline": {cp.name}, "site": {"edge", "fog", "cloud"}} {
		got := prom.labelValues(t, label, `ddnn_connector_fetched_records_total{pipeline="`+cp.name+`"}`)
		for _, w := range want {
			if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
				t.Errorf("dashboard variable %s offers %v, want %s among them", label, got, w)
			}
		}
	}
	rules := alertRules(t)
	for name, expr := range rules {
		prom.query(t, expr) // a valid expression, whatever its result
		stripped := thresholds.ReplaceAllString(expr, "")
		prom.waitData(t, name+" without thresholds", stripped, func(ss []sample) bool { return len(ss) > 0 })
		for _, sel := range selectors.FindAllString(expr, -1) {
			if len(prom.query(t, sel)) == 0 {
				t.Errorf("%s: selector %s returns no data", name, sel)
			}
		}
	}
	queried := time.Since(began)
	if a := prom.firing(t, "DdnnTierDown"); len(a) > 0 {
		t.Fatalf("DdnnTierDown fires before any tier is down: %v", a)
	}

	// The cloud's only replica dies and cannot start again: its model is
	// gone. Images that reach the cloud wait; the connector marks it down.
	if err := os.Rename(cp.cloudModel, cp.cloudModel+".gone"); err != nil {
		t.Fatal(err)
	}
	killChild(t, p, "inference", "--tier=cloud")
	killed := time.Now()
	sendHTTP(t, cp.funnel["edge"], testSet(t).Samples[300:600], "obs-b-", 4)
	testsupport.WaitFor(t, 90*time.Second, "DdnnTierDown firing for the cloud", func() bool {
		for _, a := range prom.firing(t, "DdnnTierDown") {
			if a["tier"] == "cloud" && a["site"] == "cloud" && a["pipeline"] == cp.name {
				return true
			}
		}
		return false
	})
	fired := time.Since(killed)
	for _, a := range prom.firing(t, "DdnnTierDown") {
		if a["tier"] != "cloud" {
			t.Errorf("DdnnTierDown fires for %v too", a)
		}
	}
	t.Logf("ddnn up ready after %s, Prometheus ready after %s, first scrape of every site after %s, traffic on every link scraped after %s, %d dashboard queries and %d alert expressions returned data after %s; DdnnTierDown fired %s after the cloud replica was killed",
		upReady.Round(time.Millisecond), promReady.Round(time.Millisecond), firstScrape.Round(time.Millisecond), scraped.Round(time.Millisecond), len(dash), len(rules),
		queried.Round(time.Millisecond), fired.Round(time.Millisecond))
	prom.stop(t)
	p.stop(t, syscall.SIGTERM, "SIGTERM", 30*time.Second)
}

// observed is the continuum (writeContinuum) as TestPrometheusAgainstUp
// runs it: the edge scaled between 1 and 2 replicas, a 2 s request
// timeout for the cloud's connector, and the cloud's model copied beside
// the file, so the test can take it away.
type observed struct {
	continuum
	cloudModel string
}

func writeObserved(t testing.TB, name string) observed {
	t.Helper()
	c := observed{continuum: writeContinuum(t, name)}
	c.cloudModel, _ = modelBeside(t, c.file, "cloud")
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	y = strings.Replace(y, "    inference:\n      intra_op_threads: 1\n",
		"    inference:\n      intra_op_threads: 1\n    replicas: {min: 1, max: 2}\n    scaling: {poll_interval: 1s}\n", 1)
	y = strings.Replace(y, "    site: cloud\n", "    site: cloud\n    connector: {request_timeout: 2s}\n", 1)
	if strings.Count(y, c.cloudModel) != 1 || !strings.Contains(y, "scaling:") || !strings.Contains(y, "request_timeout") {
		t.Fatalf("continuum.yaml changed shape:\n%s", y)
	}
	if err := os.WriteFile(c.file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// observability is the shipped Prometheus and Grafana directory.
func observability(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "deploy/observability", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	// thresholds are an alert's comparisons with a number.
	thresholds = regexp.MustCompile(`\s*(==|!=|>=|<=|>|<)\s*-?[0-9.]+`)
	// selectors are the series an expression reads.
	selectors = regexp.MustCompile(`\b(ddnn_[a-z0-9_]+|up)(\{[^}]*\})?`)
	// forDurations are the rules' for: settings.
	forDurations = regexp.MustCompile(`(?m)^(\s+for:) \S+$`)
)

// alertRules are the shipped rules' expressions by alert.
func alertRules(t testing.TB) map[string]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(observability(t, "rules.yml"), &f); err != nil {
		t.Fatal(err)
	}
	rules := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			rules[r.Alert] = r.Expr
		}
	}
	if len(rules) == 0 {
		t.Fatal("rules.yml holds no alert")
	}
	return rules
}

// dashboardQueries are the shipped dashboard's queries with its variables
// set as Grafana would for every pipeline and site.
func dashboardQueries(t testing.TB) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(observability(t, "grafana-dashboard.json"), &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$pipeline", ".*", "$site", ".*", "$__rate_interval", "1m")
	var qs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, vars.Replace(tg.Expr))
		}
	}
	if len(qs) == 0 {
		t.Fatal("the dashboard holds no query")
	}
	return qs
}

// promServer is a Prometheus server started by a test.
type promServer struct {
	cmd    *exec.Cmd
	url    string
	out    *testsupport.Buffer
	exited chan struct{}
}

// startPrometheus runs Prometheus with the shipped scrape config, its
// targets the continuum's admin addresses and its intervals 1 s, and the
// shipped rules with every for: 0s.
func startPrometheus(t *testing.T, bin string, c observed) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := string(observability(t, "prometheus.yml"))
	for shipped, site := range map[string]string{"127.0.0.1:9464": "edge", "127.0.0.1:9564": "fog", "127.0.0.1:9664": "cloud"} {
		target := "targets: ['" + shipped + "']"
		if !strings.Contains(cfg, target) {
			t.Fatalf("prometheus.yml no longer scrapes %s", shipped)
		}
		cfg = strings.Replace(cfg, target, "targets: ['"+c.admin[site]+"']", 1)
	}
	cfg = strings.Replace(cfg, "scrape_interval: 15s", "scrape_interval: 1s", 1)
	cfg = strings.Replace(cfg, "evaluation_interval: 15s", "evaluation_interval: 1s", 1)
	cfg += funnelJob(t, c)
	rules := forDurations.ReplaceAllString(string(observability(t, "rules.yml")), "$1 0s")
	for name, body := range map[string]string{"prometheus.yml": cfg, "rules.yml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := proctest.FreeAddr(t)
	p := &promServer{url: "http://" + addr, out: &testsupport.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", tail(p.out.String(), 40))
		}
	})
	testsupport.WaitFor(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("prometheus exited:\n%s", tail(p.out.String(), 40))
		default:
		}
		return ready(p.url + "/-/ready")
	})
	return p
}

// funnelJob is prometheus-roles.yml's ddnn-funnel job, a list item of
// scrape_configs, scraping the continuum's funnels on their delivery zones
// with the service token ddnn up made (.run/<name>/service.token in its
// working directory).
func funnelJob(t *testing.T, c observed) string {
	t.Helper()
	var roles struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(observability(t, "prometheus-roles.yml"), &roles); err != nil {
		t.Fatal(err)
	}
	for _, job := range roles.ScrapeConfigs {
		if job["job_name"] != "ddnn-funnel" {
			continue
		}
		authz, ok := job["authorization"].(map[string]any)
		if !ok || authz["type"] != "Bearer" || authz["credentials_file"] == nil {
			t.Fatalf("prometheus-roles.yml: the ddnn-funnel job presents no bearer token file: %v", job)
		}
		authz["credentials_file"] = filepath.Join(workDir(t), ".run", c.name, "service.token")
		var targets []map[string]any
		for _, site := range continuumSites {
			targets = append(targets, map[string]any{"targets": []string{c.delivery[site]}, "labels": map[string]string{"site": site}})
		}
		job["static_configs"] = targets
		b, err := yaml.Marshal([]map[string]any{job})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if line != "" {
				out.WriteString("  " + line)
			}
		}
		return out.String()
	}
	t.Fatal("prometheus-roles.yml has no ddnn-funnel job")
	return ""
}

// stop ends Prometheus by its PID and waits for it.
func (p *promServer) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Error("prometheus did not exit within 15s of SIGTERM")
	}
}

// sample is one series of a query's answer.
type sample struct {
	Metric map[string]string
	Value  [2]any
}

// get reads an API path into data, failing the test on an error answer.
func (p *promServer) get(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Status != "success" {
		t.Fatalf("GET %s: %d %s %s", path, resp.StatusCode, ans.Error, b)
	}
	if err := json.Unmarshal(ans.Data, data); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// query evaluates q now.
func (p *promServer) query(t *testing.T, q string) []sample {
	t.Helper()
	var d struct{ Result []sample }
	p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &d)
	return d.Result
}

// labelValues are label's values on the series match selects.
func (p *promServer) labelValues(t *testing.T, label, match string) []string {
	t.Helper()
	var vs []string
	p.get(t, "/api/v1/label/"+label+"/values?match[]="+url.QueryEscape(match), &vs)
	return vs
}

// firing are the labels of alert's firing instances.
func (p *promServer) firing(t *testing.T, alert string) []map[string]string {
	t.Helper()
	var d struct {
		Alerts []struct {
			Labels map[string]string
			State  string
		}
	}
	p.get(t, "/api/v1/alerts", &d)
	var out []map[string]string
	for _, a := range d.Alerts {
		if a.Labels["alertname"] == alert && a.State == "firing" {
			out = append(out, a.Labels)
		}
	}
	return out
}

// waitData waits up to 30 s for q's answer to satisfy ok, and names q
// and its last answer when it does not.
func (p *promServer) waitData(t *testing.T, what, q string, ok func([]sample) bool) {
	t.Helper()
	var last []sample
	deadline := time.Now().Add(30 * time.Second)
	for last = p.query(t, q); !ok(last); last = p.query(t, q) {
		if time.Now().After(deadline) {
			t.Fatalf("%s returns no data within 30s: %s\nlast answer: %v", what, q, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasNumber reports whether some series has a value other than NaN.
func hasNumber(ss []sample) bool {
	for _, s := range ss {
		if v, ok := s.Value[1].(string); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) {
				return true
			}
		}
	}
	return false
}
