package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
)

func newGossipKeyCmd(ios streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip-key",
		Short: "Manage the key that encrypts and authenticates gossip",
		Long: `Every seeder and agent encrypts its gossip with the keys of its
--gossip-key-file: one base64 key per line, the first used to send, every one
accepted on receipt. A host without a key neither joins nor learns anything.`,
		Example: `  swarm gossip-key generate --out /etc/swarm/gossip.key`,
	}
	var out string
	gen := &cobra.Command{
		Use:   "generate [--out FILE]",
		Short: "Print a new gossip key (32 random bytes, base64), or write it to a new key file",
		Long: `generate prints a new key on stdout, or with --out writes it to a new
file of mode 0600 (it never overwrites one). To rotate, add the new key to
every node's key file as a second line, then make it the first line
everywhere, then remove the old one: each node re-reads its file on SIGHUP
and every 10 s, and stays connected throughout.`,
		Example: `  swarm gossip-key generate --out /etc/swarm/gossip.key
  swarm gossip-key generate >> /etc/swarm/gossip.key   # rotation, step 1`,
		RunE: func(*cobra.Command, []string) error {
			k, err := gossip.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if out == "" {
				fmt.Fprintln(ios.Out, k)
				return nil
			}
			if err := writeNewFile(out, []byte(k+"\n")); err != nil {
				return err
			}
			fmt.Fprintf(ios.Out, "gossip key file %s\n", out)
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "write the key to this new file (mode 0600) instead of stdout")
	gen.Args = wrapArgs(nil)
	cmd.AddCommand(gen)
	return cmd
}

// writeNewFile writes b to a new file of mode 0600, refusing an existing one.
func writeNewFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return usageErrorf("gossip-key generate: %s already exists; remove it, choose another --out, or append a key to it with 'swarm gossip-key generate >> %s'", path, path)
		}
		return fmt.Errorf("gossip-key generate: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("gossip-key generate: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("gossip-key generate: sync %s: %w", path, err)
	}
	return f.Close()
}

// gossipKeyOptions are the daemons' gossip encryption flags.
type gossipKeyOptions struct {
	file     string
	insecure bool
}

func (o *gossipKeyOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.file, "gossip-key-file", "", "gossip key file, mode 0600: one base64 key per line, the first used to send (create it with 'swarm gossip-key generate --out FILE'); re-read on SIGHUP and every 10s (required unless --insecure-gossip)")
	f.BoolVar(&o.insecure, "insecure-gossip", false, "gossip in the clear, without a key: any host that reaches the gossip port can join, list every member and pose as a node (tests and demos only)")
}

// check refuses to run without a key unless told to, and refuses a key file
// that is unreadable, malformed or open to others; it returns the file.
func (o *gossipKeyOptions) check(daemon string) (string, error) {
	switch {
	case o.file != "" && o.insecure:
		return "", usageErrorf("%s: --gossip-key-file and --insecure-gossip exclude each other; drop one", daemon)
	case o.insecure:
		return "", nil
	case o.file == "":
		return "", usageErrorf("%s: --gossip-key-file FILE is required: gossip is encrypted and authenticated with it; create one with 'swarm gossip-key generate --out FILE' and give every node a copy, or pass --insecure-gossip to gossip in the clear", daemon)
	}
	if _, err := gossip.LoadKeyFile(o.file); err != nil {
		return "", usageErrorf("%s: --gossip-key-file: %w", daemon, err)
	}
	return o.file, nil
}

// warnInsecure says, once at start, that gossip is open.
func (o *gossipKeyOptions) warnInsecure(log *zap.Logger) {
	if o.insecure {
		log.Warn("gossip is neither encrypted nor authenticated (--insecure-gossip): any host that reaches the gossip port can join")
	}
}

// reloadOnHangup calls reload on every SIGHUP until ctx ends; the returned
// function stops it and waits. Without it a SIGHUP would end the process.
func reloadOnHangup(ctx context.Context, log *zap.Logger, reload func() (bool, error)) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// A change or an error is logged by the reload itself.
				if changed, err := reload(); err == nil && !changed {
					log.Info("SIGHUP: gossip key file re-read; keys unchanged")
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
