# syntax=docker/dockerfile:1
# imagepull_exporter for users with Docker (or buildx/podman/kaniko):
#   docker build --build-arg VERSION=$(git describe --tags) --build-arg REVISION=$(git rev-parse HEAD) -t imagepull_exporter .
# `make image` builds the same image without a Docker engine
# (internal/imagebuild): same binary path, entrypoint, user, port and labels;
# internal/imagebuild's tests check that this file agrees with it.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
# Static (no libc in the final image), no build paths, no symbols; the
# version stamped the way the Makefile (and promu) does.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w \
        -X github.com/prometheus/common/version.Version=${VERSION} \
        -X github.com/prometheus/common/version.Revision=${REVISION} \
        -X github.com/prometheus/common/version.Branch=${BRANCH} \
        -X github.com/prometheus/common/version.BuildUser=docker \
        -X github.com/prometheus/common/version.BuildDate=unknown" \
      -o /out/imagepull_exporter ./cmd/imagepull_exporter

# distroless static: CA certificates, /etc/passwd with nonroot (65532), tzdata,
# and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="imagepull_exporter" \
      org.opencontainers.image.description="Probes container registries the way the kubelet pulls and exposes the results to Prometheus." \
      org.opencontainers.image.source="https://github.com/imagepull/imagepull_exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/imagepull_exporter /bin/imagepull_exporter
USER 65532:65532
EXPOSE 9739/tcp
ENTRYPOINT ["/bin/imagepull_exporter"]
