package runtime

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// listed is a Runtime that only lists.
type listed struct {
	reps []Replica
	err  error
}

func (l *listed) Scale(context.Context, int) error        { return nil }
func (l *listed) List(context.Context) ([]Replica, error) { return l.reps, l.err }
func (l *listed) Close(context.Context) error             { return nil }

// TestReplicaList: what HandleReplicas serves, httpapi.ReadReplicas reads:
// the ready replicas of the tier asked for; an unknown tier and a runtime
// that cannot list are errors.
func TestReplicaList(t *testing.T) {
	runtimes := map[string]Runtime{
		"edge": &listed{reps: []Replica{{ID: "a", URL: "http://127.0.0.1:1", Ready: true}, {ID: "b", URL: "http://127.0.0.1:2"}, {ID: "c", URL: "http://127.0.0.1:3", Ready: true}}},
		"fog":  &listed{},
		"down": &listed{err: errors.New("docker daemon unreachable")},
	}
	mux := http.NewServeMux()
	HandleReplicas(mux, func(tier string) Runtime { return runtimes[tier] })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		tier    string
		want    []httpapi.ListedReplica
		wantErr string
	}{
		{"edge", []httpapi.ListedReplica{{ID: "a", URL: "http://127.0.0.1:1"}, {ID: "c", URL: "http://127.0.0.1:3"}}, ""},
		{"fog", []httpapi.ListedReplica{}, ""},
		{"down", nil, "503"},
		{"cloud", nil, "404"},
	} {
		got, err := httpapi.ReadReplicas(context.Background(), srv.Client(), srv.URL+httpapi.ReplicasPath(c.tier))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: %v, %v; want an error with %s", c.tier, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, %v; want %v", c.tier, got, err, c.want)
		}
	}
}

// TestCanaryReplicaList: a tier's canary replicas are listed apart from
// its replicas; a tier without a canary runtime lists none, which the
// connector reads as "send everything to the current replicas".
func TestCanaryReplicaList(t *testing.T) {
	current := map[string]Runtime{"fog": &listed{reps: []Replica{{ID: "fog-0", URL: "http://127.0.0.1:1", Ready: true}}}}
	canary := map[string]Runtime{"fog": &listed{reps: []Replica{{ID: "fog-canary-0", URL: "http://127.0.0.1:2", Ready: true}}}}
	mux := http.NewServeMux()
	HandleReplicas(mux, func(tier string) Runtime { return current[tier] })
	HandleCanaryReplicas(mux, func(tier string) Runtime { return canary[tier] })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		path string
		want []httpapi.ListedReplica
	}{
		{httpapi.ReplicasPath("fog"), []httpapi.ListedReplica{{ID: "fog-0", URL: "http://127.0.0.1:1"}}},
		{httpapi.CanaryReplicasPath("fog"), []httpapi.ListedReplica{{ID: "fog-canary-0", URL: "http://127.0.0.1:2"}}},
		{httpapi.CanaryReplicasPath("edge"), []httpapi.ListedReplica{}},
	} {
		got, err := httpapi.ReadReplicas(context.Background(), srv.Client(), srv.URL+c.path)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, %v; want %v", c.path, got, err, c.want)
		}
	}
}
