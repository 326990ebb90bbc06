package kube

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
)

func TestEnableStreamingLists(t *testing.T) {
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false) // restored after the test
	t.Setenv(watchListEnv, "")
	t.Run("the environment decides when set", func(t *testing.T) {
		if err := EnableStreamingLists(); err != nil {
			t.Fatal(err)
		}
		if clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
			t.Error("WatchListClient turned on although KUBE_FEATURE_WatchListClient is set")
		}
	})
	t.Run("on otherwise", func(t *testing.T) {
		// t.Setenv cannot unset; LookupEnv is what EnableStreamingLists reads.
		unsetenv(t, watchListEnv)
		if err := EnableStreamingLists(); err != nil {
			t.Fatal(err)
		}
		if !clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
			t.Error("WatchListClient is off after EnableStreamingLists")
		}
	})
}

func TestPagedListOptions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want metav1.ListOptions
	}{
		{"the reflector's first list: no longer from resourceVersion 0",
			metav1.ListOptions{ResourceVersion: "0", Limit: 500}, metav1.ListOptions{Limit: listPageSize}},
		{"a relist at a version client-go did not page",
			metav1.ListOptions{ResourceVersion: "42"}, metav1.ListOptions{ResourceVersion: "42", Limit: listPageSize}},
		{"a consistent list",
			metav1.ListOptions{}, metav1.ListOptions{Limit: listPageSize}},
		{"a smaller limit stays",
			metav1.ListOptions{Limit: 7}, metav1.ListOptions{Limit: 7}},
		{"a continuation page",
			metav1.ListOptions{Continue: "tok", Limit: 500}, metav1.ListOptions{Continue: "tok", Limit: listPageSize}},
		{"selectors stay",
			metav1.ListOptions{ResourceVersion: "0", FieldSelector: "a=b"}, metav1.ListOptions{FieldSelector: "a=b", Limit: listPageSize}},
	} {
		if got := pagedListOptions(tc.in); got != tc.want {
			t.Errorf("%s: pagedListOptions(%+v) = %+v, want %+v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestShrinkPage(t *testing.T) {
	remaining := int64(3)
	list := &corev1.PodList{
		ListMeta: metav1.ListMeta{ResourceVersion: "9", Continue: "next", RemainingItemCount: &remaining},
		Items: []corev1.Pod{
			{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", Annotations: map[string]string{"big": "x"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ghcr.io/acme/app:v1"}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns"}},
		},
	}
	page, err := shrinkPage(list, transformPod)
	if err != nil {
		t.Fatal(err)
	}
	if page.ResourceVersion != "9" || page.Continue != "next" || page.RemainingItemCount == nil || *page.RemainingItemCount != 3 {
		t.Errorf("list metadata = %+v, want the page's", page.ListMeta)
	}
	if len(page.Items) != 2 {
		t.Fatalf("%d items, want 2", len(page.Items))
	}
	for i, o := range page.Items {
		p, ok := o.(*podInfo)
		if !ok {
			t.Fatalf("item %d is a %T, want *podInfo", i, o)
		}
		if p.Name != list.Items[i].Name || p.Annotations != nil {
			t.Errorf("item %d = %+v, want the compact copy of %s", i, p.ObjectMeta, list.Items[i].Name)
		}
	}
}

// unsetenv unsets key for the rest of t, restoring it after.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	old, had := os.LookupEnv(key)
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if had {
			_ = os.Setenv(key, old)
		}
	})
}
