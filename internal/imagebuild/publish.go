package imagebuild

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Index assembles an OCI image index of images, one per platform (plats[i]
// is images[i]'s): what a multi-platform push or OCI layout holds.
func Index(images []v1.Image, plats []v1.Platform) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, img := range images {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img, Descriptor: v1.Descriptor{Platform: &plats[i]},
		})
	}
	return idx
}

// Push writes an image or an index (one of them non-nil) to ref, with the
// credentials of the docker config ($DOCKER_CONFIG, ~/.docker/config.json)
// as crane and docker use them. Registries on loopback are spoken to over
// plain HTTP (go-containerregistry's rule), others over HTTPS unless
// insecure. It returns ref's repository @ the pushed digest.
func Push(ctx context.Context, ref string, insecure bool, img v1.Image, idx v1.ImageIndex) (string, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	// Its own transport, closed when done: nothing of the push lingers
	// (tests check for leaked goroutines).
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	var d v1.Hash
	if idx != nil {
		if err := remote.WriteIndex(r, idx, ropts...); err != nil {
			return "", fmt.Errorf("push %s: %w", r, err)
		}
		d, err = idx.Digest()
	} else {
		if err := remote.Write(r, img, ropts...); err != nil {
			return "", fmt.Errorf("push %s: %w", r, err)
		}
		d, err = img.Digest()
	}
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	return r.Context().String() + "@" + d.String(), nil
}
