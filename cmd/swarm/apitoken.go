package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/seeder"
)

func newAPITokenCmd(ios streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api-token",
		Short: "Make the bearer token that guards the seeder's HTTP API",
		Long: `The seeder's API (publish, status, rollout commands) needs a bearer token or
a client certificate. 'swarm api-token generate' makes a random token (32
bytes, base64url): give the file to 'swarm seeder --api-token-file' and to
the commands that talk to it (--api-token-file, or $` + seeder.TokenEnv + `).`,
		Example: `  swarm api-token generate --out /etc/swarm/api-token
  swarm seeder --store /var/lib/swarm/store --key /etc/swarm/swarm.key --api-token-file /etc/swarm/api-token
  ` + seeder.TokenEnv + `=$(cat /etc/swarm/api-token) swarm status`,
	}
	var out string
	gen := &cobra.Command{
		Use:   "generate [--out FILE]",
		Short: "Print a new random API token, or write it to FILE (mode 0600)",
		Example: `  swarm api-token generate --out /etc/swarm/api-token
  swarm api-token generate > token && chmod 600 token`,
		RunE: func(*cobra.Command, []string) error {
			tok, err := seeder.GenerateToken()
			if err != nil {
				return fmt.Errorf("api-token generate: %w", err)
			}
			if out == "" {
				fmt.Fprintln(ios.Out, tok)
				return nil
			}
			if err := writeTokenFile(out, tok); err != nil {
				return err
			}
			fmt.Fprintf(ios.Out, "API token  %s\n", out)
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "write the token to this file (mode 0600) instead of printing it; never overwrites")
	cmd.AddCommand(gen)
	for _, c := range cmd.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return cmd
}

// writeTokenFile creates path, mode 0600, holding tok; it refuses to
// overwrite a file.
func writeTokenFile(path, tok string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("api-token generate: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return usageErrorf("api-token generate: %s already exists; remove it or choose another --out", path)
	}
	if err != nil {
		return fmt.Errorf("api-token generate: %w", err)
	}
	if _, err := fmt.Fprintln(f, tok); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("api-token generate: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("api-token generate: %w", err)
	}
	return f.Close()
}
