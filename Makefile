# ddnn — build, test and run. `make run` and `make test` install what is
# missing first (apt packages, the ONNX Runtime library, Go modules).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 1
GO ?= go

MODULE   := github.com/ddnn-continuum/ddnn
ORT_LIB  := $(CURDIR)/.deps/onnxruntime/libonnxruntime.so.1
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   := $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X $(MODULE)/internal/cli.version=$(VERSION) -X $(MODULE)/internal/cli.commit=$(COMMIT) \
            -X $(MODULE)/internal/onnx.DefaultLibPath=$(ORT_LIB)
PIPELINE ?= deploy/pipeline.yaml
# Tests find the library through the environment.
export ONNXRUNTIME_LIB := $(ORT_LIB)

.PHONY: all deps kafka-deps jaeger-deps build test unit smoke run bench fuzz models models-deps vet clean help image

all: build

help:
	@echo "make run      install, build, check the models and run the sample pipeline (ddnn up)"
	@echo "make test     install, build, vet, run all tests and the binary smoke checks"
	@echo "make build    build bin/ddnn"
	@echo "make image    build the ddnn Docker image FROM scratch (needs a Docker engine)"
	@echo "make deps     install apt packages, the ONNX Runtime library and Go modules"
	@echo "make kafka-deps  fetch the Apache Kafka jars the Kafka integration tests run (make test does)"
	@echo "make jaeger-deps build the Jaeger the trace tests export to (make test does)"
	@echo "make bench    run the benchmarks"
	@echo "make fuzz     fuzz the wire decoders and the pipeline YAML parser for a short while"
	@echo "make models   retrain and export the sample DDNN (not part of CI)"

deps:
	@scripts/deps.sh

# Apache Kafka jars for the tests that run a real 3-node cluster; without
# Java or Maven Central it warns and those tests skip.
kafka-deps:
	@scripts/kafka-deps.sh

# Jaeger v2, built from the Go module proxy, for the trace tests; without
# the proxy it warns and those tests skip.
jaeger-deps:
	@scripts/jaeger-deps.sh

build: deps
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ddnn ./cmd/ddnn

vet: deps
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n $$out ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# internal/e2e runs whole pipelines (and a 3-node Kafka cluster) one test
# after another; on a busy machine it can pass go test's 10-minute default.
unit: deps
	$(GO) test -race -count=1 -timeout 20m ./...

smoke: build
	bin/ddnn version
	bin/ddnn models check -f $(PIPELINE)
	@if bin/ddnn models check -f models/testdata/broken-chain.yaml >/dev/null 2>&1; then \
		echo "smoke: broken-chain fixture passed the check"; exit 1; fi
	bin/ddnn models eval -f $(PIPELINE) --json

# The tests run with a private Docker engine and the ddnn image, for the
# docker runtime's tests; the script stops dockerd by its PID afterwards.
test: vet build kafka-deps jaeger-deps
	scripts/with-dockerd.sh $(MAKE) --no-print-directory unit smoke

image: build
	scripts/build-image.sh ddnn:latest

run: build
	bin/ddnn models check -f $(PIPELINE)
	@echo
	@echo "Starting the pipeline (Ctrl-C stops it). In another shell:"
	@echo "  curl -s -H 'Content-Type: application/octet-stream' --data-binary @deploy/examples/sneaker.u8 http://127.0.0.1:8080/v1/ingest"
	@echo "  coap-client-notls -m post -t 42 -f deploy/examples/shirt.u8 coap://127.0.0.1:5683/v1/ingest"
	@echo "  bin/ddnn results -f $(PIPELINE) --count 2"
	@echo
	bin/ddnn up -f $(PIPELINE)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz: deps
	@for p in ./internal/wire/ ./internal/pipeline/; do \
		for f in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s $$p || exit 1; done; done

models-deps:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch python3-onnx dataset-fashion-mnist

models: models-deps
	/usr/bin/python3 models/train.py --out models

clean:
	rm -rf bin
