package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/collector/web"
	"github.com/imagepull/imagepull_exporter/probe"
)

// diagnoseTimeout bounds a whole diagnose run (every image of a pod).
const diagnoseTimeout = 2 * time.Minute

// diagnoseCmd is `imagepull_exporter diagnose pod|image`: for humans, it
// explains in plain words why a pull fails, with the pod's own credentials.
type diagnoseCmd struct {
	configFile    *string
	kubeconfig    string
	output        string
	credProviders *credProviderFlags

	pod, image *kingpin.CmdClause

	podName        string
	imageRef       string
	namespace      string
	serviceAccount string
	module         string
}

// registerDiagnose adds the diagnose commands to app and returns the
// function that runs them: handled is false when the parsed command is not
// one of them, and the diagnose command, on which the caller declares cp's
// flags. configFile is the global --config.file.
func registerDiagnose(app *kingpin.Application, configFile *string, cp *credProviderFlags) (func(cmd string, stdout, stderr io.Writer) (code int, handled bool), *kingpin.CmdClause) {
	d := &diagnoseCmd{configFile: configFile, credProviders: cp}
	c := app.Command("diagnose", "Explain in plain words whether and why an image cannot be pulled, with the credentials the kubelet would use; exit 1 when it cannot.")
	// On diagnose itself, so that both subcommands take them.
	c.Flag("kubeconfig", "Kubeconfig file of the cluster whose pods, service accounts and pull secrets to read. Without it: the in-cluster service account, else $KUBECONFIG, else no cluster (diagnose image only).").
		PlaceHolder("PATH").StringVar(&d.kubeconfig)
	addOutputFlag(c, &d.output)
	d.pod = c.Command("pod", "Diagnose every image of a pod, with its pull secrets (or its service account's).")
	d.pod.Arg("pod", "NAMESPACE/NAME of the pod.").Required().StringVar(&d.podName)
	d.image = c.Command("image", "Diagnose one image, with the pull secrets a pod of --namespace and --service-account would have.")
	d.image.Arg("image", "Image reference, e.g. ghcr.io/acme/api:v1.2.4").Required().StringVar(&d.imageRef)
	d.image.Flag("namespace", "Namespace whose pull secrets to use; empty: only the module's credentials.").
		Short('n').StringVar(&d.namespace)
	d.image.Flag("service-account", "Service account whose imagePullSecrets a pod would get.").
		Default("default").StringVar(&d.serviceAccount)
	d.image.Flag("module", "Module to probe with; default: the one discovery: modules maps the image's registry to (else \"default\").").
		StringVar(&d.module)
	return d.run, c
}

func (d *diagnoseCmd) run(cmd string, stdout, stderr io.Writer) (int, bool) {
	if cmd != d.pod.FullCommand() && cmd != d.image.FullCommand() {
		return 0, false
	}
	// A usage error is said before any file is read or cluster asked.
	ns, name, found := strings.Cut(d.podName, "/")
	if cmd == d.pod.FullCommand() && (!found || ns == "" || name == "") {
		fmt.Fprintf(stderr, "%s: diagnose pod wants NAMESPACE/NAME, got %q\n", programName, d.podName)
		return exitUsage, true
	}
	cfg, err := loadConfig(*d.configFile, d.credProviders)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure, true
	}
	if _, defined := cfg.Modules[d.module]; d.module != "" && d.module != config.DefaultModuleName && !defined {
		fmt.Fprintf(stderr, "%s: module %q is not defined in %s\n", programName, d.module, configName(*d.configFile))
		return exitFailure, true
	}
	var client kubernetes.Interface
	restCfg, ok, err := kube.RESTConfig(d.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitFailure, true
	}
	if ok {
		restCfg.UserAgent = userAgent()
		if client, err = kubernetes.NewForConfig(restCfg); err != nil {
			fmt.Fprintf(stderr, "%s: kubernetes client: %v\n", programName, err)
			return exitFailure, true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, diagnoseTimeout)
	defer cancel()
	prober := probe.NewProber(probe.ProberOptions{UserAgent: userAgent()})
	defer prober.Close()
	dg := &kube.Diagnoser{Client: client, Config: cfg, Prober: prober, Out: stdout, Module: d.module}
	if p, _ := d.credProviders.providers(nil); p != nil {
		dg.CredentialProviders = p
	}
	if d.output == outputJSON {
		// The same diagnosis, its text discarded: the report is what
		// scripts read.
		dg.Out, dg.Report = io.Discard, kube.NewDiagnoseReport()
	}

	var pullable bool
	switch cmd {
	case d.pod.FullCommand():
		pullable, err = dg.DiagnosePod(ctx, ns, name)
	default:
		sa := d.serviceAccount
		if d.namespace == "" {
			sa = ""
		}
		pullable, err = dg.DiagnoseImage(ctx, d.imageRef, d.namespace, sa)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitFailure, true
	}
	if dg.Report != nil {
		if err := web.WriteJSON(stdout, dg.Report); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", programName, err)
			return exitFailure, true
		}
	}
	if !pullable {
		return exitFailure, true
	}
	return exitOK, true
}
