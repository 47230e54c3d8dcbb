package main

import (
	"crypto/rand"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/release"
)

type keygenOptions struct {
	out string
}

func newKeygenCmd(ios streams) *cobra.Command {
	o := &keygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Create an ed25519 key pair for signing releases and desired states",
		Long: `keygen writes DIR/swarm.key (private, mode 0600) and DIR/swarm.pub (public).
The seeder and 'swarm publish' sign with swarm.key; every agent pins swarm.pub
with --trust. It never overwrites an existing key.`,
		Example: "  swarm keygen --out /etc/swarm",
		RunE: func(*cobra.Command, []string) error {
			if o.out == "" {
				return usageErrorf("keygen: --out DIR is required")
			}
			k, err := release.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			priv, pub, err := release.WriteKeyPair(o.out, k)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintf(ios.Out, "private key  %s\npublic key   %s\nkey id       %s\n", priv, pub, k.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&o.out, "out", "", "directory for swarm.key and swarm.pub (required)")
	return cmd
}
