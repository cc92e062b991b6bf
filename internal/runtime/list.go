package runtime

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// HandleReplicas serves httpapi.ReplicasPattern on mux: the tier's ready
// replicas as a JSON array of httpapi.ListedReplica, which connectors
// follow. lookup returns nil for an unknown tier.
func HandleReplicas(mux *http.ServeMux, lookup func(tier string) Runtime) {
	mux.HandleFunc(httpapi.ReplicasPattern, listHandler(lookup, "no such tier"))
}

// HandleCanaryReplicas serves httpapi.CanaryReplicasPattern on mux: the
// ready replicas of the tier's canary, as HandleReplicas serves the
// tier's. lookup returns nil for a tier without a canary runtime: its
// list is empty (the connector sends the tier's messages to its current
// replicas), not an error.
func HandleCanaryReplicas(mux *http.ServeMux, lookup func(tier string) Runtime) {
	mux.HandleFunc(httpapi.CanaryReplicasPattern, listHandler(lookup, ""))
}

// listHandler serves the list of lookup's runtime for the route's tier;
// without a runtime, 404 with missing, or an empty list when missing is
// empty.
func listHandler(lookup func(tier string) Runtime, missing string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rt := lookup(r.PathValue("tier"))
		if rt == nil && missing != "" {
			http.Error(w, missing, http.StatusNotFound)
			return
		}
		if rt == nil {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "[]\n")
			return
		}
		reps, err := rt.List(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		out := []httpapi.ListedReplica{}
		for _, x := range reps {
			if x.Ready {
				out = append(out, httpapi.ListedReplica{ID: x.ID, URL: x.URL})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}
}
