package up_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ddnn-continuum/ddnn/connector"
	"github.com/ddnn-continuum/ddnn/funnel"
	"github.com/ddnn-continuum/ddnn/inference"
	"github.com/ddnn-continuum/ddnn/internal/command"
	"github.com/ddnn-continuum/ddnn/internal/monolith"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
	"github.com/ddnn-continuum/ddnn/internal/proctest"
	"github.com/ddnn-continuum/ddnn/internal/socket"
	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/ddnn-continuum/ddnn/internal/up"
)

// fakeChildrenEnv names a directory: when set, the children ddnn up starts
// from this test binary do not play their roles but record their arguments
// there and answer /readyz on the address their flags give. The tests of
// the sites check what each site starts and with which flags.
const fakeChildrenEnv = "DDNN_UP_TEST_FAKE_CHILDREN"

// fakeChild parses args with the flags of the command they name, records
// the command as childLine gives it (so a flag the command does not take
// fails the test) in dir, and serves /readyz, /healthz and an empty
// /metrics on the address its flags give until SIGTERM.
func fakeChild(dir string, args []string) {
	line, addr, err := parseChild(args)
	if err != nil {
		line = fmt.Sprintf("%q does not parse: %v", args, err)
	}
	name := filepath.Join(dir, args[0]+"-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(name, []byte(line), 0o644); err != nil || addr == "" {
		os.Exit(1)
	}
	ln, err := socket.Listen(addr) // as the real children do
	if err != nil {
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			return
		}
		io.WriteString(w, "ok\n")
	})}
	go srv.Serve(ln)
	<-ctx.Done()
	srv.Close()
	os.Exit(0)
}

// parseChild parses a child's args with its command's own flags and
// returns its childLine and the address it serves on (a funnel's
// readiness is asked on its delivery zone).
func parseChild(args []string) (line, addr string, err error) {
	parse := func(c command.Flagger) error {
		fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.Flags(fs)
		return command.Parse(fs, args[1:])
	}
	switch args[0] {
	case "funnel":
		var c funnel.Command
		err = parse(&c)
		return childLine(args[0], command.Args(c)), c.DeliveryListen, err
	case "connector":
		var c connector.Command
		err = parse(&c)
		return childLine(args[0], command.Args(c)), c.Admin, err
	case "uplink":
		var c connector.UplinkCommand
		err = parse(&c)
		return childLine(args[0], command.Args(c)), c.Admin, err
	case "inference":
		var c inference.Command
		err = parse(&c)
		return childLine(args[0], command.Args(c)), c.Listen, err
	case "monolith":
		var c monolith.Command
		err = parse(&c)
		return childLine(args[0], command.Args(c)), c.Admin, err
	}
	return "", "", fmt.Errorf("unknown command %q", args[0])
}

// childLine is a child's command as the tests compare it: its name and
// the flags of its options (command.Args).
func childLine(name string, flags []string) string {
	return strings.Join(append([]string{name}, flags...), " ")
}

// childRole is what every child is told: the pipeline file, its site's
// brokers, the placement, a service token file (any) and the log level.
func childRole(file, brokers, tiersOn, level string) command.Role {
	return command.Role{File: file, Brokers: brokers, TiersOn: tiersOn, ServiceTokenFile: "*", Log: command.Log{Level: level}}
}

// continuumSite is one site of the test's continuum.
type continuumSite struct {
	kafka, funnel, delivery, admin string
}

// writeContinuum writes deploy/examples/continuum.yaml with free ports, no
// CoAP, a scaled fog tier and each site's broker data in the test's
// directory.
func writeContinuum(t *testing.T) (string, *pipeline.Pipeline, map[string]continuumSite) {
	y := testsupport.Shipped(t, "deploy/examples/continuum.yaml")
	y = strings.ReplaceAll(y, "coap_listen: 127.0.0.1:5683", `coap_listen: "off"`)
	y = strings.Replace(y, "    site: fog\n", "    site: fog\n    replicas: {min: 1, max: 2}\n", 1)
	sites := map[string]continuumSite{}
	for _, s := range []struct{ name, kafka, funnel, delivery, admin string }{
		{"edge", "9092", "8080", "8081", "9464"},
		{"fog", "9192", "8180", "8181", "9564"},
		{"cloud", "9292", "8280", "8281", "9664"},
	} {
		cs := continuumSite{proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)}
		sites[s.name] = cs
		y = strings.Replace(y, "embedded_listen: 127.0.0.1:"+s.kafka,
			"embedded_listen: "+cs.kafka+"\n      embedded_data_dir: kafka-"+s.name, 1)
		y = strings.Replace(y, "delivery_listen: 127.0.0.1:"+s.delivery, "delivery_listen: "+cs.delivery, 1)
		y = strings.Replace(y, " listen: 127.0.0.1:"+s.funnel, " listen: "+cs.funnel, 1)
		y = strings.Replace(y, "listen: 127.0.0.1:"+s.admin, "listen: "+cs.admin, 1)
	}
	file := filepath.Join(t.TempDir(), "continuum.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return file, p, sites
}

// topicsOn lists the pipeline's topics on the broker at addr.
func topicsOn(t *testing.T, addr string) []string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range ts.Names() {
		if strings.HasPrefix(n, "fmnist.") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// TestRunSites runs the continuum's three sites, then only the fog, with
// children that record their flags, and checks what each site runs: its
// own broker with the topics that live there, its funnel, the replicas and
// connector of its tier against its own Kafka and funnel, one uplink per
// link leaving it, its admin server, and a stop report per tier and link.
func TestRunSites(t *testing.T) {
	file, p, sites := writeContinuum(t)
	for _, tc := range []struct {
		site string   // --site, "" for all
		runs []string // the sites that run
	}{
		{"", []string{"edge", "fog", "cloud"}},
		{"fog", []string{"fog"}},
	} {
		t.Run("site="+tc.site, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv(fakeChildrenEnv, dir)
			var log, announce testsupport.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				errc <- up.Run(ctx, up.Config{
					Pipeline: p, File: file, Site: tc.site, Out: &log, Announce: &announce,
					Logger: slog.New(slog.NewTextHandler(&log, nil)),
				})
			}()
			returned := false
			t.Cleanup(func() { // after a failure too
				cancel()
				if !returned {
					<-errc
				}
			})
			for _, name := range tc.runs {
				waitReady(t, "http://"+sites[name].admin+"/readyz", errc, &log)
			}
			for name, s := range sites {
				if !slices.Contains(tc.runs, name) {
					if c, err := net.Dial("tcp", s.kafka); err == nil {
						c.Close()
						t.Errorf("site %s's broker runs", name)
					}
					continue
				}
				want := p.TopicsOn(name)
				slices.Sort(want)
				if got := topicsOn(t, s.kafka); !slices.Equal(got, want) {
					t.Errorf("site %s's broker holds %v, want %v", name, got, want)
				}
				resp, err := http.Get("http://" + s.admin + "/v1/tiers/" + name + "/replicas")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("site %s: replica list of tier %s: status %d", name, name, resp.StatusCode)
				}
			}

			// The fog's scaler watches the fog tier on the fog's Kafka.
			if slices.Contains(tc.runs, "fog") {
				deadline := time.Now().Add(20 * time.Second)
				for !strings.Contains(get(t, "http://"+sites["fog"].admin+"/metrics"), `ddnn_scaler_replicas{pipeline="fmnist",state="desired",tier="fog"} 1`) {
					if time.Now().After(deadline) {
						t.Fatalf("the fog's admin serves no scaler replicas for the fog tier:\n%s", get(t, "http://"+sites["fog"].admin+"/metrics"))
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			if slices.Contains(tc.runs, "edge") && strings.Contains(get(t, "http://"+sites["edge"].admin+"/metrics"), "ddnn_scaler_") {
				t.Errorf("the edge runs a scaler; none of its tiers is scaled")
			}

			// Each tier is named after its site in the continuum.
			var want []string
			for _, name := range tc.runs {
				s := sites[name]
				want = append(want,
					childLine("funnel", command.Args(funnel.Command{Role: childRole(file, s.kafka, "", "info"),
						Site: name, Listen: s.funnel, DeliveryListen: s.delivery})),
					childLine("inference", command.Args(inference.Command{File: file, Tier: name, Listen: "*",
						ServiceTokenFile: "*", ModelSHA: "*", Log: command.Log{Level: "info"}})),
					childLine("connector", command.Args(connector.Command{Role: childRole(file, s.kafka, "", "info"),
						Tier: name, ReplicasURL: "http://" + s.admin + "/v1/tiers/" + name + "/replicas",
						Serving: connector.Serving{Admin: "*", DrainTimeout: 3 * time.Second, InstanceID: "up-" + name}})))
				for _, l := range p.Links() {
					if l.From == name {
						want = append(want, childLine("uplink", command.Args(connector.UplinkCommand{Role: childRole(file, s.kafka, "", "info"),
							From: name, To: l.To, Serving: connector.Serving{Admin: "*", InstanceID: "up-uplink-" + l.To}})))
					}
				}
			}
			got := recordedArgs(t, dir)
			for _, w := range want {
				if !slices.ContainsFunc(got, func(g string) bool { return matchArgs(g, w) }) {
					t.Errorf("no child ran %q; children:\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d children, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
			}

			cancel()
			select {
			case err := <-errc:
				returned = true
				if err != nil {
					t.Fatalf("Run: %v\n%s", err, log.String())
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("Run did not return within 15s of the stop:\n%s", log.String())
			}
			out, ann := log.String(), announce.String()
			for _, name := range tc.runs {
				if !strings.Contains(out, "site="+name+" tier="+name+" unprocessed=0") {
					t.Errorf("no stop report for tier %s:\n%s", name, out)
				}
				if !strings.Contains(ann, fmt.Sprintf("pipeline %q site %q is up", "fmnist", name)) {
					t.Errorf("site %s not announced:\n%s", name, ann)
				}
			}
			if slices.Contains(tc.runs, "fog") && !strings.Contains(out, "site=fog uplink=cloud unprocessed=0") {
				t.Errorf("no stop report for the fog's uplink to the cloud:\n%s", out)
			}
			if slices.Contains(tc.runs, "edge") && !strings.Contains(ann, "  send:     POST http://"+sites["edge"].funnel+"/v1/ingest") {
				t.Errorf("the edge does not say where to send:\n%s", ann)
			}
		})
	}
}

// get returns the body at url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recordedArgs are the fake children's argument lines.
func recordedArgs(t *testing.T, dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, string(b))
	}
	return args
}

// matchArgs compares argument lines word by word; "--name=*" in want
// matches any value of the flag.
func matchArgs(got, want string) bool {
	g, w := strings.Fields(got), strings.Fields(want)
	if len(g) != len(w) {
		return false
	}
	for i := range w {
		if prefix, ok := strings.CutSuffix(w[i], "=*"); ok && strings.HasPrefix(g[i], prefix+"=") {
			continue
		}
		if w[i] != g[i] {
			return false
		}
	}
	return true
}

// TestSiteClientCAAuthenticatesDevices: a site whose own funnel.tls asks
// devices for a client certificate may take device data from beyond this
// machine: up checks the exposure of the site's funnel, not of the
// pipeline-wide funnel section. 192.0.2.1 (TEST-NET-1) is no address of
// this machine, so the start then fails binding it, and nothing is sent.
func TestSiteClientCAAuthenticatesDevices(t *testing.T) {
	file, p, _ := writeContinuum(t)
	for i := range p.SiteList {
		if s := &p.SiteList[i]; s.Name == "cloud" {
			s.Funnel.Listen = "192.0.2.1:0"
			s.Funnel.TLS = pipeline.FunnelTLS{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := up.Run(ctx, up.Config{Pipeline: p, File: file, Site: "cloud", Ephemeral: true, Out: io.Discard, Announce: io.Discard})
	if err == nil || strings.Contains(err.Error(), "reachable from outside") || !strings.Contains(err.Error(), "funnel.listen: ") {
		t.Fatalf("Run of site cloud with its own client CA on funnel.listen 192.0.2.1:0: %v, want the bind of funnel.listen to fail", err)
	}
}
