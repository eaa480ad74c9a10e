package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/quotagate/quotagate/cmd/noopauthz/noop"
	"github.com/quotagate/quotagate/extauthz"
)

// gracePeriod bounds how long in-flight Checks may take to finish on stop.
const gracePeriod = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(2)
	}
}

// run serves the no-op Authorization service until ctx is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("noopauthz", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: noopauthz [flags]\n\nAn ext_authz gRPC server that answers every Check with OK: the load benchmark's baseline.\n\nFlags:")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", envOr(getenv, "NOOPAUTHZ_ADDR", "127.0.0.1:9192"), "gRPC listen `address` (env NOOPAUTHZ_ADDR)")
	var opts noop.Options
	streams := fs.Uint("max-concurrent-streams", extauthz.DefaultMaxConcurrentStreams, "maximum concurrent streams per connection")
	fs.DurationVar(&opts.KeepaliveTime, "keepalive-time", extauthz.DefaultKeepaliveTime, "ping a connection idle for this long")
	fs.DurationVar(&opts.KeepaliveTimeout, "keepalive-timeout", extauthz.DefaultKeepaliveTimeout, "close a connection whose ping is not answered within this")
	fs.DurationVar(&opts.KeepaliveMinTime, "keepalive-min-time", extauthz.DefaultKeepaliveMinTime, "shortest client keepalive interval tolerated")
	fs.BoolVar(&opts.Plain, "plain", false, "serve with grpc-go's default options, ignoring the flags above: no stream workers, no tuning (the plain baseline of issue 17)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("noopauthz: unexpected argument %q; see --help", fs.Arg(0))
	}
	opts.MaxConcurrentStreams = uint32(*streams)

	srv, err := noop.NewGRPCServer(opts)
	if err != nil {
		return fmt.Errorf("noopauthz: %w", err)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("noopauthz: listen on %s: %w (is another server using it? pick another with --addr)", *addr, err)
	}
	fmt.Fprintf(stdout, "noopauthz: listening on %s\n", lis.Addr())

	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return fmt.Errorf("noopauthz: serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(gracePeriod):
		srv.Stop()
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
