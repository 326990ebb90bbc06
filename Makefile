# `make` runs what a change must pass before it lands: fmt, lint, generate,
# test. `make help` lists every target.

GO        ?= go
BIN       := $(CURDIR)/bin
# Tools built by scripts/install-deps.sh (etcd, kube-apiserver, helm...) come
# first; Debian's packages (prometheus, docker-registry...) are on the normal
# PATH.
export PATH := $(BIN):$(PATH)

PKG       := github.com/imagepull/imagepull_exporter
BINARY    := imagepull_exporter
# The whole suite starts real registries, etcd + kube-apiserver, Prometheus
# and Alertmanager on 2 cores: generous, so only a real hang trips it.
TEST_TIMEOUT ?= 30m

# Version information the way promu stamps it (prometheus/common/version).
# Read from git explicitly: GOFLAGS may carry -buildvcs=false, and a source
# tarball has no .git at all, hence the fallbacks.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILDUSER ?= $(shell id -un 2>/dev/null || echo unknown)@$(shell hostname 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS := -X $(VERSION_PKG).Version=$(VERSION) \
           -X $(VERSION_PKG).Revision=$(REVISION) \
           -X $(VERSION_PKG).Branch=$(BRANCH) \
           -X $(VERSION_PKG).BuildUser=$(BUILDUSER) \
           -X $(VERSION_PKG).BuildDate=$(BUILDDATE)

# Go and jsonnet sources, without the module cache or build outputs.
GOFILES      = $(shell find . -name '*.go' -not -path './bin/*' -not -path './.cache/*' -not -path './vendor/*')
JSONNETFILES = $(shell find mixin -name '*.jsonnet' -o -name '*.libsonnet' 2>/dev/null | grep -v '/vendor/')

.DEFAULT_GOAL := all

.PHONY: all
all: fmt lint generate test ## Format, lint, regenerate and test: what a change must pass

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install test dependencies: apt packages and pinned Go tools in bin/ (idempotent)
	@scripts/install-deps.sh

.PHONY: build
build: ## Build ./imagepull_exporter with version information
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/imagepull_exporter

.PHONY: run
run: ## Run the exporter in demo mode
	$(GO) run ./cmd/imagepull_exporter --demo

.PHONY: test
test: deps ## Install deps, run all tests with -race, then check the mixin and generated files
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory check-generated mixin-lint mixin-test

# The fast tier: no deps, no external binaries (internal/testenv skips what
# needs them under -short), no exporter build. For the edit-test loop; a
# change lands on `make test`.
.PHONY: test-short
test-short: ## Unit tests only (go test -short): Go alone, no external binaries
	$(GO) test -short -count=1 ./...

.PHONY: lint
lint: deps ## gofmt (must be clean), go vet, staticcheck
	@out="$$(gofmt -l $(GOFILES))"; if [ -n "$$out" ]; then \
		echo "gofmt: these files need formatting (run make fmt):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

.PHONY: fmt
fmt: deps ## Format Go (gofmt -w) and jsonnet (jsonnetfmt -i) sources
	@gofmt -w $(GOFILES)
	@files="$(JSONNETFILES)"; if [ -n "$$files" ]; then jsonnetfmt -i $$files; fi

.PHONY: bench
bench: deps ## Run every benchmark once and print its figures
	$(GO) test -run='^$$' -bench=. -benchtime=1x -benchmem -timeout $(TEST_TIMEOUT) ./...

# The built exporter as a whole process: CPU per warm probe (200 targets on
# a real registry), and idle CPU, RSS and /metrics at 1k/10k/30k pods in a
# real apiserver (IMAGEPULL_BENCH_LONG=1 adds 100k). IMAGEPULL_BENCH_CPUPROFILE=FILE
# also writes a CPU profile of the probing window.
.PHONY: bench-process
bench-process: deps ## Start the built exporter against a real registry and apiserver; print whole-process CPU, RSS, scrape figures
	$(GO) test -run='^$$' -bench='^BenchmarkProcess$$' -benchtime=1x -timeout $(TEST_TIMEOUT) ./collector/kube/

.PHONY: generate
generate: deps ## Render the mixin into alerts/ and dashboards/, and deploy/'s derived files
	scripts/mixin.sh generate
	scripts/deploy.sh generate

.PHONY: check-generated
check-generated: deps ## Fail when alerts/, dashboards/ or deploy/'s derived files are stale
	scripts/mixin.sh check-generated
	scripts/deploy.sh check-generated

.PHONY: mixin-lint
mixin-lint: deps ## jsonnetfmt and jsonnet-lint on the mixin, promtool check rules
	scripts/mixin.sh lint

.PHONY: mixin-test
mixin-test: deps ## promtool test rules: the alert unit tests
	scripts/mixin.sh test

# `make image` builds the release image without a Docker engine (the
# Dockerfile builds the same one with Docker). IMAGE=host/repo:tag pushes it
# (plain HTTP to loopback registries; credentials from the docker config);
# without IMAGE it is written to $(IMAGE_TAR) for `docker load`/`podman load`.
# PLATFORMS=linux/amd64,linux/arm64 builds a multi-platform index (push only).
IMAGE     ?=
IMAGE_TAR ?= $(BINARY)-image.tar
PLATFORMS ?= linux/$(shell $(GO) env GOARCH)
# Reproducible layers: timestamps are the commit's time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: image
image: ## Build the OCI image without Docker (IMAGE=host/repo:tag pushes, else writes $(IMAGE_TAR))
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./internal/cmd/imagebuild \
		--platform '$(PLATFORMS)' --ldflags '$(LDFLAGS)' \
		--version '$(VERSION)' --revision '$(REVISION)' \
		$(if $(IMAGE),--push '$(IMAGE)',--tarball '$(IMAGE_TAR)' --tag '$(BINARY):$(VERSION)')

# `make release` writes what a release ships into $(DIST): per-platform
# tarballs of the binary, the multi-platform image as an OCI archive (pushed
# too with IMAGE=host/repo:tag), the packaged Helm chart, an SPDX SBOM and
# SHA256SUMS (internal/cmd/release says which file is which).
DIST              ?= dist
RELEASE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: release
release: ## Build $(DIST)/: binaries, multi-arch image (IMAGE=host/repo:tag pushes it), Helm chart, SBOM, SHA256SUMS
	rm -rf '$(DIST)'
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./internal/cmd/release \
		--dist '$(DIST)' --platform '$(RELEASE_PLATFORMS)' --ldflags '$(LDFLAGS)' \
		--version '$(VERSION)' --revision '$(REVISION)' --helm '$(BIN)/helm' \
		$(if $(IMAGE),--push '$(IMAGE)')

.PHONY: deploy-check
deploy-check: deps ## deploy/: generated files current, helm lint, and the deploy and image tests
	scripts/deploy.sh check-generated
	helm lint --strict deploy/helm/imagepull-exporter
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./internal/deploytest/ ./internal/imagebuild/ ./internal/cmd/imagebuild/

.PHONY: clean
clean: ## Remove build outputs (bin/ keeps the tools: use clean-tools for that)
	rm -f $(BINARY) $(IMAGE_TAR)
	rm -rf $(DIST)

.PHONY: clean-tools
clean-tools: ## Remove bin/ (the next make deps rebuilds it, from Go's cache when warm)
	rm -rf $(BIN)
