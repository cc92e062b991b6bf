package inference

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// FunnelDeliverer delivers a batch's decisions to a funnel over HTTP: the
// forwarded samples, as one binary batch, to the next tier's route, and the
// exits, as result records, to the results route. Both run at once and both
// must be acknowledged.
type FunnelDeliverer struct {
	base   string
	tier   string
	next   string // "" on the last tier
	enc    wire.Encoding
	client *http.Client
	now    func() time.Time
}

// NewFunnelDeliverer delivers for tier to the delivery zone of the funnel
// at baseURL (http://host:port), presenting tokens' current service token
// (nil: none); next is the next tier's name, "" on the last tier.
// Forwards travel in enc.
func NewFunnelDeliverer(baseURL, tier, next string, enc wire.Encoding, timeout time.Duration, tokens *auth.Tokens) *FunnelDeliverer {
	return &FunnelDeliverer{
		base: baseURL,
		enc:  enc,
		tier: tier,
		next: next,
		client: &http.Client{Timeout: timeout, Transport: tokens.Transport(&http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		})},
		now: time.Now,
	}
}

// Deliver implements Deliverer. msgs carry the hop of this tier already.
func (d *FunnelDeliverer) Deliver(ctx context.Context, msgs []wire.Message, ds []wire.Decision) error {
	var fwd []wire.Message
	var results []wire.Result
	exitedAt := d.now().UTC()
	for i := range ds {
		m := &msgs[i]
		if ds[i].Exit {
			results = append(results, wire.NewResult(m, &ds[i], exitedAt))
			continue
		}
		if d.next == "" {
			return fmt.Errorf("tier %q: message %s did not exit on the last tier", d.tier, m.ID)
		}
		fwd = append(fwd, wire.Message{ID: m.ID, Device: m.Device, SentAt: m.SentAt, Route: d.next, Hops: m.Hops, Tensor: *ds[i].Forward})
	}
	g, ctx := errgroup.WithContext(ctx)
	if len(fwd) > 0 {
		g.Go(func() error {
			body, err := wire.AppendMessages(nil, d.enc, fwd)
			if err != nil {
				return err
			}
			return d.post(ctx, httpapi.PathTiers+d.next, d.enc.ContentType(), body)
		})
	}
	if len(results) > 0 {
		g.Go(func() error {
			body, err := wire.AppendResults(nil, results)
			if err != nil {
				return err
			}
			return d.post(ctx, httpapi.PathResults, wire.ContentTypeJSON, body)
		})
	}
	return g.Wait()
}

func (d *FunnelDeliverer) post(ctx context.Context, path, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("funnel %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("funnel %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
