// Command imagebuild builds imagepull_exporter's OCI image without a Docker
// engine (`make image`): it cross-compiles the static binary for each
// platform, assembles the image with go-containerregistry
// (internal/imagebuild) and pushes it, or writes an OCI layout or a tarball.
//
//	go run ./internal/cmd/imagebuild --push 127.0.0.1:5000/imagepull_exporter:dev
//	go run ./internal/cmd/imagebuild --tarball image.tar     # docker/podman load
//	go run ./internal/cmd/imagebuild --oci-layout dir/       # skopeo, crane, oras
//
// Registries on loopback are spoken to over plain HTTP, others over HTTPS
// unless --insecure; credentials come from the docker config
// ($DOCKER_CONFIG, ~/.docker/config.json), as crane and docker use them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imagepull/imagepull_exporter/internal/imagebuild"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		push      = fs.String("push", "", "push the image to this reference, host/repo:tag")
		tarPath   = fs.String("tarball", "", "write a docker/podman-loadable tarball here (single platform only)")
		tarTag    = fs.String("tag", "imagepull_exporter:dev", "the reference recorded in --tarball")
		ociLayout = fs.String("oci-layout", "", "write an OCI image layout into this directory")
		platforms = fs.String("platform", "linux/"+runtime.GOARCH, "comma-separated os/arch[/variant] list; more than one builds an index")
		binary    = fs.String("binary", "", "ship this prebuilt binary instead of compiling (single platform only)")
		ldflags   = fs.String("ldflags", "", "go build -ldflags (the Makefile's version stamping)")
		version   = fs.String("version", "dev", "org.opencontainers.image.version")
		revision  = fs.String("revision", "unknown", "org.opencontainers.image.revision")
		source    = fs.String("source", imagebuild.DefaultSource, "org.opencontainers.image.source")
		licenses  = fs.String("licenses", imagebuild.DefaultLicenses, "org.opencontainers.image.licenses")
		caFile    = fs.String("ca-certificates", imagebuild.DefaultCACertificates, "CA bundle to ship in the image")
		insecure  = fs.Bool("insecure", false, "allow plain HTTP to a registry that is not on loopback")
		root      = fs.String("module-root", ".", "the exporter's module directory")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *push == "" && *tarPath == "" && *ociLayout == "" {
		fmt.Fprintln(stderr, "imagebuild: give --push, --tarball or --oci-layout")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	created, err := sourceDateEpoch()
	if err != nil {
		fmt.Fprintln(stderr, "imagebuild:", err)
		return 2
	}
	plats := strings.Split(*platforms, ",")
	if (*binary != "" || *tarPath != "") && len(plats) != 1 {
		fmt.Fprintln(stderr, "imagebuild: --binary and --tarball take a single --platform")
		return 2
	}
	tmp, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		fmt.Fprintln(stderr, "imagebuild:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	var images []v1.Image
	var descs []v1.Platform
	for _, p := range plats {
		osName, arch, variant, err := imagebuild.ParsePlatform(strings.TrimSpace(p))
		if err != nil {
			fmt.Fprintln(stderr, "imagebuild:", err)
			return 2
		}
		bin := *binary
		if bin == "" {
			bin = filepath.Join(tmp, fmt.Sprintf("imagepull_exporter-%s-%s", osName, arch))
			fmt.Fprintf(stderr, "imagebuild: building %s/%s\n", osName, arch)
			if err := imagebuild.BuildBinary(ctx, imagebuild.BuildOptions{
				ModuleRoot: *root, OS: osName, Architecture: arch, LDFlags: *ldflags, Output: bin,
			}); err != nil {
				fmt.Fprintln(stderr, "imagebuild:", err)
				return 1
			}
		}
		img, err := imagebuild.Image(imagebuild.Options{
			Binary: bin, OS: osName, Architecture: arch, Variant: variant,
			Version: *version, Revision: *revision, Source: *source, Licenses: *licenses,
			CACertificates: *caFile, Created: created,
		})
		if err != nil {
			fmt.Fprintln(stderr, "imagebuild:", err)
			return 1
		}
		images = append(images, img)
		descs = append(descs, v1.Platform{OS: osName, Architecture: arch, Variant: variant})
	}

	if err := write(ctx, images, descs, *push, *insecure, *tarPath, *tarTag, *ociLayout, stdout); err != nil {
		fmt.Fprintln(stderr, "imagebuild:", err)
		return 1
	}
	return 0
}

func write(ctx context.Context, images []v1.Image, plats []v1.Platform, push string, insecure bool, tarPath, tarTag, ociLayout string, stdout io.Writer) error {
	var index v1.ImageIndex
	if len(images) > 1 {
		index = imagebuild.Index(images, plats)
	}
	if push != "" {
		var img v1.Image
		if index == nil {
			img = images[0]
		}
		pushed, err := imagebuild.Push(ctx, push, insecure, img, index)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, pushed)
	}
	if tarPath != "" {
		tag, err := name.NewTag(tarTag)
		if err != nil {
			return fmt.Errorf("--tag %q: %w", tarTag, err)
		}
		if err := tarball.WriteToFile(tarPath, tag, images[0]); err != nil {
			return fmt.Errorf("write %s: %w", tarPath, err)
		}
		fmt.Fprintf(stdout, "%s (%s)\n", tarPath, tag)
	}
	if ociLayout != "" {
		p, err := layout.Write(ociLayout, empty.Index)
		if err != nil {
			return fmt.Errorf("OCI layout %s: %w", ociLayout, err)
		}
		if index != nil {
			err = p.AppendIndex(index)
		} else {
			err = p.AppendImage(images[0])
		}
		if err != nil {
			return fmt.Errorf("OCI layout %s: %w", ociLayout, err)
		}
		fmt.Fprintln(stdout, ociLayout)
	}
	return nil
}

// sourceDateEpoch is the reproducible-builds convention for "when":
// SOURCE_DATE_EPOCH seconds, or the Unix epoch when unset.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, errors.New("SOURCE_DATE_EPOCH must be Unix seconds, got " + strconv.Quote(s))
	}
	return time.Unix(n, 0).UTC(), nil
}
