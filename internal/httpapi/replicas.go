package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// ReplicasPattern is the route (a net/http pattern) of a tier's ready
// replicas on a replica manager's admin address (ddnn up, ddnn scaler):
// a JSON array of ListedReplica that connectors follow.
const ReplicasPattern = "GET /v1/tiers/{tier}/replicas"

// ReplicasPath is the path of tier's replica list (ReplicasPattern).
func ReplicasPath(tier string) string { return PathTiers + tier + "/replicas" }

// CanaryReplicasPattern is the route of the ready replicas of a tier's
// canary (tiers[].canary), in the form of ReplicasPattern: the connector
// follows both.
const CanaryReplicasPattern = "GET /v1/tiers/{tier}/canary/replicas"

// CanaryReplicasPath is the path of tier's canary replica list
// (CanaryReplicasPattern).
func CanaryReplicasPath(tier string) string { return PathTiers + tier + "/canary/replicas" }

// ListedReplica is one ready replica in a replica list.
type ListedReplica struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// maxListBytes bounds a replica list read.
const maxListBytes = 1 << 20

// ReadReplicas gets the replica list at url (a replica manager's
// ReplicasPath) with client.
func ReadReplicas(ctx context.Context, client *http.Client, url string) ([]ListedReplica, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxListBytes))
		return nil, fmt.Errorf("replica list %s: %s", url, resp.Status)
	}
	var reps []ListedReplica
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxListBytes)).Decode(&reps); err != nil {
		return nil, fmt.Errorf("replica list %s: %w", url, err)
	}
	return reps, nil
}
