package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

const usage = `quotagate enforces tiered, cost-based usage quotas for Envoy (ext_authz).

Usage:
  quotagate <command> [flags]

Commands:
  serve         run the ext_authz gRPC server, with health and metrics over HTTP
  check         send one Check to a running server and print the decision
  config        validate, encrypt or decrypt a configuration file
  envoy-config  print Envoy configuration (ext_authz filter, routes) for a quota config
  usage         report usage from the ledger
  ledger        verify the ledger's hash chain
  version       print the version

Run "quotagate <command> --help" for a command's flags.
Exit codes: 0 success, 1 failure, 2 bad usage. check exits 0 when the
request is allowed, 1 when it is denied and 2 on any error.
`

// run is the whole program: main only supplies the process's arguments,
// environment, standard streams and a context cancelled by SIGTERM/SIGINT.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{code: 2, err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, getenv, stdin, stdout, stderr)
	case "config":
		return runConfig(ctx, rest, getenv, stdin, stdout, stderr)
	case "envoy-config":
		return runEnvoyConfig(ctx, rest, stdout, stderr, envoyRoutes(getenv))
	case "usage":
		return runUsage(ctx, rest, getenv, stdout, stderr)
	case "ledger":
		return runLedger(ctx, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(rest, stdout)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return exitError{code: 2, err: fmt.Errorf("unknown command %q (want serve, check, config, envoy-config, usage, ledger or version; see quotagate --help)", cmd)}
}

// exitError carries a specific exit code; a nil err means exit silently.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

// exitCode prints err as one line on w and returns the process exit code.
func exitCode(err error, w io.Writer) int {
	if err == nil {
		return 0
	}
	code := 1
	var ee exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	fmt.Fprintln(w, "quotagate: "+oneLine(err.Error()))
	return code
}

// oneLine folds a multi-line error (a list of config problems) into one
// line, so every start error is one clear line.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	if len(lines) > 1 && strings.HasSuffix(lines[0], ":") {
		return lines[0] + " " + strings.Join(lines[1:], "; ")
	}
	return strings.Join(lines, "; ")
}
