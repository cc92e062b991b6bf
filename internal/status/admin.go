package status

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
)

// scrape reads /metrics at every address at once and merges what
// answered; errs holds, by address, why one did not.
func scrape(ctx context.Context, client *http.Client, addrs []string) (metricSet, map[string]error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		set  = metricSet{}
		errs = map[string]error{}
	)
	for _, a := range addrs {
		wg.Go(func() {
			fams, err := readMetrics(ctx, client, baseURL(a)+"/metrics")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[a] = err
				return
			}
			set.add(fams)
		})
	}
	wg.Wait()
	return set, errs
}

// readyReplicas reads tier's ready replicas from the first of addrs that
// serves its list (ddnn up's admin address, or the scaler's); ok is false
// when none does.
func readyReplicas(ctx context.Context, client *http.Client, addrs []string, tier string) (reps []httpapi.ListedReplica, ok bool) {
	for _, a := range addrs {
		reps, err := httpapi.ReadReplicas(ctx, client, baseURL(a)+httpapi.ReplicasPath(tier))
		if err == nil {
			return reps, true
		}
	}
	return nil, false
}

// probeFunnel asks the funnel at base (its delivery zone, sites[].funnel.url)
// whether it is ready; it needs no credential.
func probeFunnel(ctx context.Context, client *http.Client, base string) Endpoint {
	e := Endpoint{Address: base}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/readyz", nil)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	resp, err := client.Do(req)
	if err != nil {
		e.Error = brief(err).Error()
		return e
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		e.Error = fmt.Sprintf("answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
		return e
	}
	e.Up = true
	return e
}
