package inference

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/ddnn-continuum/ddnn/internal/httpapi"
	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// BenchmarkSession measures the model cost per sample of each tier at batch
// 1 and 64, one intra-op thread, input conversion excluded.
func BenchmarkSession(b *testing.B) {
	p := shipped(b)
	for _, tier := range []string{"edge", "fog", "cloud"} {
		s := openSession(b, p, tier)
		for _, n := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", tier, n), func(b *testing.B) {
				in := make([]float32, n*s.InputLen())
				for i := range in {
					in[i] = float32(i%255) / 255
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := s.Run(in, n); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}

// BenchmarkFunctionHTTP measures the inference function end to end over
// loopback HTTP (encode request, serve, decode decisions) per sample, for the
// edge tier with a batch of 64 images, in each encoding.
func BenchmarkFunctionHTTP(b *testing.B) {
	_, srv := newFunction(b, "edge", Config{})
	msgs := imageMessages(b, 64)
	client := srv.Client()
	for _, enc := range []wire.Encoding{wire.JSON, wire.Binary} {
		name := map[wire.Encoding]string{wire.JSON: "json", wire.Binary: "binary"}[enc]
		b.Run(name+"/batch=64", func(b *testing.B) {
			var body []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				body, err = wire.AppendMessages(body[:0], enc, msgs)
				if err != nil {
					b.Fatal(err)
				}
				resp, err := client.Post(srv.URL+httpapi.PathInfer, enc.ContentType(), bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				out, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d: %v %s", resp.StatusCode, err, out)
				}
				if _, err := wire.DecodeDecisions(enc, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/sample")
			b.ReportMetric(float64(len(body)), "request_bytes")
		})
	}
}

// BenchmarkInfer measures the function's work without HTTP: conversion,
// model run, per-sample policy and forward tensors, for a batch of 64.
func BenchmarkInfer(b *testing.B) {
	p := shipped(b)
	f, err := New(Config{Pipeline: p, Tier: "edge"})
	if err != nil {
		b.Fatal(err)
	}
	s := openSession(b, p, "edge")
	if err := f.SetSession(s); err != nil {
		b.Fatal(err)
	}
	msgs := imageMessages(b, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, rej, err := f.Infer(s, msgs); err != nil || len(rej) > 0 {
			b.Fatal(err, rej)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/sample")
}
