// Command credplugin is a kubelet credential provider plugin for the
// tests: it speaks the exec API credentialprovider.kubelet.k8s.io/v1
// through k8s.io/kubelet's published types, as ecr-credential-provider and
// its kind do, and stands for a cloud's short-lived credentials.
//
//	credplugin [--mode=ok|hang|crash|garbage|wrong-version|no-cache-key|huge]
//
// The environment (set through the CredentialProviderConfig's env, so the
// tests also prove env reaches the plugin):
//
//	CREDPLUGIN_DIR             required: each run appends the requested
//	                           image to DIR/runs; the credential handed out
//	                           is DIR/credential ("user:password"), which a
//	                           test rotates as a cloud would; DIR/mode, when
//	                           it exists, overrides --mode
//	CREDPLUGIN_CACHE_KEY_TYPE  Image, Registry or Global (default Registry)
//	CREDPLUGIN_CACHE_DURATION  the response's cacheDuration (e.g. 5m, 0s);
//	                           unset leaves it out (defaultCacheDuration)
//	CREDPLUGIN_AUTH_KEYS       comma-separated auth keys; default the
//	                           requested image's registry
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

func main() {
	mode := flag.String("mode", "ok", "ok, hang, crash, garbage, wrong-version, no-cache-key or huge")
	flag.Parse()
	if err := run(*mode); err != nil {
		fmt.Fprintf(os.Stderr, "credplugin: %v\n", err)
		os.Exit(3)
	}
}

func run(mode string) error {
	dir := os.Getenv("CREDPLUGIN_DIR")
	if dir == "" {
		return fmt.Errorf("CREDPLUGIN_DIR is not set (env of the CredentialProviderConfig)")
	}
	in, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		return err
	}
	var req credentialproviderv1.CredentialProviderRequest
	if err := json.Unmarshal(in, &req); err != nil {
		return fmt.Errorf("decode the request: %w", err)
	}
	if req.APIVersion != credentialproviderv1.SchemeGroupVersion.String() || req.Kind != "CredentialProviderRequest" {
		return fmt.Errorf("request is %s %s, want %s CredentialProviderRequest", req.APIVersion, req.Kind, credentialproviderv1.SchemeGroupVersion)
	}
	f, err := os.OpenFile(filepath.Join(dir, "runs"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintln(f, req.Image)
	f.Close()
	cred, err := os.ReadFile(filepath.Join(dir, "credential"))
	if err != nil {
		return err
	}
	user, password, _ := strings.Cut(strings.TrimSpace(string(cred)), ":")
	if m, err := os.ReadFile(filepath.Join(dir, "mode")); err == nil {
		mode = strings.TrimSpace(string(m)) // a test switching modes between runs
	}

	switch mode {
	case "hang":
		time.Sleep(time.Hour)
	case "crash":
		// What a failing cloud CLI prints, with the last credential in it:
		// the exporter must keep only a redacted tail.
		fmt.Fprintf(os.Stderr, "AccessDenied: token %s expired for %s\n", password, user)
		os.Exit(1)
	case "garbage":
		fmt.Printf("{\"apiVersion\": \"%s\", \"auth\": {\"x\": \"%s\"\n", credentialproviderv1.SchemeGroupVersion, password)
		return nil
	case "huge":
		fmt.Print(strings.Repeat(" ", 2<<20))
		return nil
	}

	resp := credentialproviderv1.CredentialProviderResponse{
		TypeMeta:     metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderResponse"},
		CacheKeyType: credentialproviderv1.RegistryPluginCacheKeyType,
		Auth:         map[string]credentialproviderv1.AuthConfig{},
	}
	switch mode {
	case "wrong-version":
		resp.APIVersion = "credentialprovider.kubelet.k8s.io/v1beta1"
	case "no-cache-key":
		resp.CacheKeyType = ""
	}
	if t := os.Getenv("CREDPLUGIN_CACHE_KEY_TYPE"); t != "" && mode != "no-cache-key" {
		resp.CacheKeyType = credentialproviderv1.PluginCacheKeyType(t)
	}
	if d := os.Getenv("CREDPLUGIN_CACHE_DURATION"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil {
			return err
		}
		resp.CacheDuration = &metav1.Duration{Duration: v}
	}
	keys := []string{strings.SplitN(req.Image, "/", 2)[0]}
	if k := os.Getenv("CREDPLUGIN_AUTH_KEYS"); k != "" {
		keys = strings.Split(k, ",")
	}
	for _, k := range keys {
		resp.Auth[k] = credentialproviderv1.AuthConfig{Username: user, Password: password}
	}
	return json.NewEncoder(os.Stdout).Encode(resp)
}
