package runtime

import (
	"encoding/json"
	"net/http"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// HandleReplicas serves httpapi.ReplicasPattern on mux: the tier's ready
// replicas as a JSON array of httpapi.ListedReplica, which connectors
// follow. lookup returns nil for an unknown tier.
func HandleReplicas(mux *http.ServeMux, lookup func(tier string) Runtime) {
	mux.HandleFunc(httpapi.ReplicasPattern, func(w http.ResponseWriter, r *http.Request) {
		rt := lookup(r.PathValue("tier"))
		if rt == nil {
			http.Error(w, "no such tier", http.StatusNotFound)
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
	})
}
