package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/alecthomas/kingpin/v2"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/web"
	"github.com/imagepull/imagepull_exporter/probe"
)

// probeFlags are the probe command's flags.
//
// The transport and credential flags adjust the module --module names (from
// --config.file, or the embedded default): --plain-http, --insecure and
// --ca-file replace the module's plain_http and tls settings as a whole,
// --username with --password-stdin replaces its credentials (bound to the
// probed image's registry alone); its timeouts stay. So a registry that
// needs nothing more than these probes without a configuration file, and a
// module that is right but for one setting can be tried with that setting
// changed, without editing the file.
type probeFlags struct {
	image         string
	module        string
	verbose       bool
	output        string
	plainHTTP     bool
	insecure      bool
	caFile        string
	username      string
	passwordStdin bool
}

// Output formats of probe and diagnose (-o).
const (
	outputText = "text"
	outputJSON = "json"
)

func addProbeCommand(app *kingpin.Application, p *probeFlags) *kingpin.CmdClause {
	c := app.Command("probe", "Probe one image once, print phases, reason, digest and rate limit; exit 1 when the probe fails.")
	c.Arg("image", "Image reference, e.g. nginx, quay.io/prometheus/busybox:latest, host:5000/app@sha256:...").
		Required().StringVar(&p.image)
	c.Flag("module", "Module of the configuration file (or of the embedded default) to probe with; the flags below adjust it.").
		Default(config.DefaultModuleName).StringVar(&p.module)
	c.Flag("verbose", "Also print every request with its headers (credentials redacted).").
		Short('v').BoolVar(&p.verbose)
	addOutputFlag(c, &p.output)
	c.Flag("plain-http", "Speak plain HTTP to the registry (module key plain_http), for a local or insecure registry.").
		BoolVar(&p.plainHTTP)
	c.Flag("insecure", "HTTPS without verifying the registry's certificate (tls.insecure_skip_verify); --ca-file is the better fix.").
		BoolVar(&p.insecure)
	c.Flag("ca-file", "HTTPS, trusting the CA certificates of this PEM file for the registry (tls.ca_file).").
		PlaceHolder("PATH").StringVar(&p.caFile)
	c.Flag("username", "Log in as this user, with the password (or token) read from stdin by --password-stdin; replaces the module's credentials, for the image's registry only.").
		PlaceHolder("USER").StringVar(&p.username)
	c.Flag("password-stdin", "Read --username's password or token from the first line of stdin (there is no password flag: a command line shows in ps and shell history).").
		BoolVar(&p.passwordStdin)
	return c
}

// addOutputFlag declares -o/--output.
func addOutputFlag(c *kingpin.CmdClause, v *string) {
	c.Flag("output", "Output format: text, for humans, or json, for scripts (one JSON document whose shape is documented in the README; \"schema\" says its version).").
		Short('o').Default(outputText).EnumVar(v, outputText, outputJSON)
}

// maxPasswordStdin bounds what --password-stdin reads: registry tokens are
// a few KiB (an ECR token about 2 KiB); anything past this is a mistake,
// such as a file piped in instead of a password.
const maxPasswordStdin = 64 << 10

// readPasswordLine reads the first line of r, at most maxPasswordStdin
// bytes, without its line ending.
func readPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxPasswordStdin+2)) // the password, \r and \n
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--password-stdin: reading stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case len(line) > maxPasswordStdin:
		return "", fmt.Errorf("--password-stdin: the first line of stdin is longer than %d KiB; give the password alone", maxPasswordStdin>>10)
	case line == "":
		return "", errors.New("--password-stdin: stdin holds no password (its first line is empty)")
	}
	return line, nil
}

// checkFlags reports a combination of flags that cannot work, before
// anything is read or sent.
func (p *probeFlags) checkFlags() error {
	switch {
	case p.passwordStdin && p.username == "":
		return errors.New("--password-stdin needs --username")
	case p.username != "" && !p.passwordStdin:
		return errors.New("--username needs --password-stdin: the password is read from stdin, never from the command line")
	case p.plainHTTP && (p.insecure || p.caFile != ""):
		return errors.New("--plain-http excludes --insecure and --ca-file: TLS settings have no effect over plain HTTP")
	}
	if p.caFile != "" {
		pem, err := os.ReadFile(p.caFile)
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca-file %s holds no PEM certificate; point it at a CA bundle", p.caFile)
		}
	}
	return nil
}

// adjust applies the transport and credential flags to m, the module named
// by --module, for a probe of registry; overrides names the flags that
// changed it.
func (p *probeFlags) adjust(m probe.Module, registry, password string) (_ probe.Module, overrides []string) {
	overrides = []string{} // [] in JSON, not null
	if p.plainHTTP || p.insecure || p.caFile != "" {
		m.PlainHTTP = p.plainHTTP
		m.TLS = probe.TLSConfig{InsecureSkipVerify: p.insecure, CAFile: p.caFile}
		for flag, on := range map[string]bool{"plain-http": p.plainHTTP, "insecure": p.insecure, "ca-file": p.caFile != ""} {
			if on {
				overrides = append(overrides, flag)
			}
		}
	}
	if p.username != "" {
		m.Auth = probe.AuthConfig{Username: p.username, Password: probe.Secret(password), Registries: []string{registry}}
		overrides = append(overrides, "username")
	}
	slices.Sort(overrides)
	return m, overrides
}

// probeOnce is the `probe` command.
func probeOnce(f *flags, stdin io.Reader, stdout, stderr io.Writer) int {
	p := &f.probe
	if err := p.checkFlags(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage
	}
	var password string
	if p.passwordStdin {
		var err error
		if password, err = readPasswordLine(stdin); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", programName, err)
			return exitUsage
		}
	}
	cfg, err := loadConfig(f.configFile, f.credProviders)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	m, ok := cfg.Modules[p.module]
	if !ok && p.module == config.DefaultModuleName {
		m, ok = probe.DefaultModule, true // as for a target naming no module
	}
	if !ok {
		fmt.Fprintf(stderr, "%s: module %q is not defined in %s\n", programName, p.module, configName(f.configFile))
		return exitFailure
	}
	ref, err := probe.ParseReference(p.image)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitFailure
	}
	m, overrides := p.adjust(m, ref.Registry, password)
	if err := m.CheckBinding(ref.Registry); err != nil {
		// As /probe: a probe with a module's credentials on a registry
		// they are not bound to is refused, not silently anonymous.
		var ue *probe.UnboundError
		if errors.As(err, &ue) {
			ue.Module = p.module
		}
		fmt.Fprintf(stderr, "%s: refused: %v\n", programName, err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prober := probe.NewProber(probe.ProberOptions{UserAgent: userAgent()})
	defer prober.Close()
	// The one door every request goes through, as in the server; without
	// a budget it never refuses.
	res, _ := collector.NewSender(nil).Do(ctx, collector.Send{Purpose: collector.PurposeOnDemand, Registry: ref.Registry},
		func(ctx context.Context) probe.Result {
			return prober.Probe(ctx, probe.Target{Ref: ref, ModuleName: p.module, Module: m})
		})

	if p.output == outputJSON {
		rep := web.NewProbeReport(res, m, p.verbose)
		rep.Module, rep.Overrides = p.module, overrides
		if err := web.WriteJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", programName, err)
			return exitFailure
		}
	} else {
		mod := p.module
		if len(overrides) > 0 {
			mod += ", with --" + strings.Join(overrides, " --")
		}
		fmt.Fprintf(stdout, "%-12s %s\n", "module:", mod)
		web.WriteRedacted(stdout, res, m, p.verbose)
	}
	if !res.Success {
		return exitFailure
	}
	return exitOK
}
