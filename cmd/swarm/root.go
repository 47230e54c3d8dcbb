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

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmdeploy/swarm/installer"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, decided in one place (exitCode).
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: unreachable, refused, port in use…
	exitUsage   = 2 // the command was asked wrongly: flags, arguments, bad input
)

// errUsage marks errors caused by how the command was called.
var errUsage = errors.New("usage")

// usageErrorf builds an error that exits with exitUsage.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %w", errUsage, fmt.Errorf(format, a...))
}

// streams are the command's standard streams; tests substitute them.
type streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// globalOptions are flags every command takes.
type globalOptions struct {
	logLevel  string
	logFormat string
}

// Main runs the CLI and returns the process exit code.
//
// "swarm hook-exec" is hidden from the command tree: the agent starts its
// own binary that way to run each hook under the shim (see package
// installer), which decides its exit code itself, the hook's.
func Main(args []string, in io.Reader, out, errw io.Writer) int {
	if len(args) > 0 && args[0] == installer.ShimCommand {
		return installer.ShimMain(args[1:])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ios := streams{In: in, Out: out, Err: errw}
	root := newRootCmd(ios)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(errw, "swarm: %s\n", oneLine(errorText(err)))
	return exitCode(err)
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage), isFlagError(err):
		return exitUsage
	default:
		return exitFailure
	}
}

// errorText drops the internal "usage: " marker from the printed line.
func errorText(err error) string {
	return strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// flagError marks cobra's own flag and argument parsing errors.
type flagError struct{ err error }

func (e flagError) Error() string { return e.err.Error() }
func (e flagError) Unwrap() error { return e.err }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

func newRootCmd(ios streams) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "swarm",
		Short: "Peer-to-peer release distribution for large fleets",
		Long: `swarm gets a new release onto thousands of machines quickly and safely.

A seeder packs and signs each release; every node runs 'swarm agent', learns
the release it should run over gossip, downloads it from the other nodes with
BitTorrent, verifies and installs it with a local hook, and gossips its health.`,
		Example: `  swarm keygen --role release --out ~/.swarm         # a release engineer's or CI's key
  swarm keygen --role rollout --out /etc/swarm       # the seeder's key
  swarm gossip-key generate --out /etc/swarm/gossip.key
  swarm api-token generate --out /etc/swarm/api-token
  swarm seeder --store /var/lib/swarm/store --key /etc/swarm/rollout.key --trust-release /etc/swarm/release.pub \
    --gossip-key-file /etc/swarm/gossip.key --api-token-file /etc/swarm/api-token
  swarm agent --data /var/lib/swarm --join seeder.example:7946 --trust-release /etc/swarm/release.pub \
    --trust-rollout /etc/swarm/rollout.pub --gossip-key-file /etc/swarm/gossip.key --hook /etc/swarm/install
  swarm publish ./build --app web --version 1.4.2 --key ~/.swarm/release.key --seeder http://127.0.0.1:7700 \
    --api-token-file /etc/swarm/api-token
  swarm status --seeder http://127.0.0.1:7700 --api-token-file /etc/swarm/api-token`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(ios.Out)
	root.SetErr(ios.Err)
	root.SetIn(ios.In)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "console", "log format on stderr: console or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError{err} })

	root.AddCommand(
		newKeygenCmd(ios),
		newAPITokenCmd(ios),
		newGossipKeyCmd(ios),
		newSeederCmd(ios, g),
		newAgentCmd(ios, g),
		newPublishCmd(ios, g),
		newSignCmd(ios),
		newStatusCmd(ios),
		newRolloutCmd(ios),
		newBenchCmd(ios, g),
		newVersionCmd(ios),
	)
	for _, c := range root.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return root
}

// wrapArgs makes cobra's argument-count errors usage errors.
func wrapArgs(fn cobra.PositionalArgs) cobra.PositionalArgs {
	if fn == nil {
		fn = cobra.NoArgs
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return flagError{fmt.Errorf("%w; see 'swarm %s --help'", err, cmd.Name())}
		}
		return nil
	}
}

// newLogger builds the zap logger for daemons: to stderr, console or JSON.
func newLogger(g *globalOptions, errw io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, usageErrorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch g.logFormat {
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, usageErrorf("--log-format %q: use console or json", g.logFormat)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(errw)), lvl)
	return zap.New(core), nil
}

func newVersionCmd(ios streams) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print swarm's version",
		Example: "  swarm version",
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(ios.Out, "swarm %s\n", version)
			return nil
		},
	}
}
