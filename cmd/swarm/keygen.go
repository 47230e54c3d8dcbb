package main

import (
	"crypto/rand"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/release"
)

type keygenOptions struct {
	out, role string
}

func newKeygenCmd(ios streams) *cobra.Command {
	o := &keygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen --role release|rollout --out DIR",
		Short: "Create an ed25519 key pair for one role: signing releases or desired states",
		Long: `keygen writes DIR/<role>.key (private, mode 0600) and DIR/<role>.pub (public).

A release key (release.key) signs manifests: release engineers and CI hold
it and use it with 'swarm publish --key' and 'swarm sign --key'. The rollout
key (rollout.key) signs desired states: the seeder holds it (its --key).
Agents pin release.pub with --trust-release and rollout.pub with
--trust-rollout; the seeder pins release.pub with --trust-release. A key
has one role. It never overwrites an existing key.`,
		Example: "  swarm keygen --role release --out ~/.swarm\n  swarm keygen --role rollout --out /etc/swarm",
		RunE: func(*cobra.Command, []string) error {
			if o.out == "" {
				return usageErrorf("keygen: --out DIR is required")
			}
			if o.role == "" {
				return usageErrorf("keygen: --role is required: release (signs manifests: swarm publish, swarm sign) or rollout (the seeder's --key: signs desired states)")
			}
			role, err := release.ParseRole(o.role)
			if err != nil {
				return usageErrorf("keygen: --role: %w", err)
			}
			k, err := release.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			priv, pub, err := release.WriteKeyPair(o.out, role, k)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintf(ios.Out, "role         %s\nprivate key  %s\npublic key   %s\nkey id       %s\n", role, priv, pub, k.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&o.out, "out", "", "directory for <role>.key and <role>.pub (required)")
	cmd.Flags().StringVar(&o.role, "role", "", "release (signs manifests) or rollout (the seeder's key, signs desired states) (required)")
	return cmd
}
