package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

type signOptions struct {
	app, version, key string
	api               apiFlags
	json              bool
}

func newSignCmd(ios streams) *cobra.Command {
	o := &signOptions{}
	cmd := &cobra.Command{
		Use:   "sign --app NAME --version V --key RELEASE.KEY --seeder URL",
		Short: "Add a release key's signature to a release the seeder holds (k of n)",
		Long: `sign fetches the signed manifest of a stored release from the seeder, shows
what it signs, signs it with --key (a release key) and sends the signature
back. A seeder started with --release-threshold N starts a release's rollout
when its N-th valid signature arrives; until then the release is stored and
no node moves. A key that has signed already changes nothing.`,
		Example: `  swarm sign --app web --version 1.4.2 --key ~/.swarm/release.key --seeder http://127.0.0.1:7700`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return signRun(cmd.Context(), ios, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.app, "app", "", "app name (required)")
	f.StringVar(&o.version, "version", "", "release version (required)")
	f.StringVar(&o.key, "key", "", "release key file to sign with (required, mode 0600)")
	o.api.add(f)
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

func signRun(ctx context.Context, ios streams, o *signOptions) error {
	if o.app == "" || o.version == "" || o.key == "" {
		return usageErrorf("sign: --app, --version and --key are required")
	}
	if err := release.ValidateApp(o.app); err != nil {
		return usageErrorf("sign: %w", err)
	}
	if err := release.ValidateVersion(o.version); err != nil {
		return usageErrorf("sign: %w", err)
	}
	key, err := release.LoadPrivateKey(o.key)
	if err != nil {
		return usageErrorf("sign: %w", err)
	}
	client, err := o.api.client("sign")
	if err != nil {
		return err
	}
	if err := checkAPI(ctx, "sign", client); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	info, err := client.Release(ctx, o.app, o.version)
	if err != nil {
		return refusal("sign", o.app, o.version, err)
	}
	// Sign what the seeder sent only if it is the release asked for: the
	// seeder is not trusted to choose what a release key signs.
	m, err := info.Signed.Unverified()
	if err != nil {
		return fmt.Errorf("sign %s %s: the seeder sent a manifest that does not decode: %w", o.app, o.version, err)
	}
	if m.App != o.app || m.Version != o.version {
		return fmt.Errorf("sign %s %s: the seeder sent the manifest of %s %s; not signing it", o.app, o.version, m.App, m.Version)
	}
	sig, err := info.Signed.Sign(key)
	if err != nil {
		return fmt.Errorf("sign %s %s: %w", o.app, o.version, err)
	}
	res, err := client.AddSignature(ctx, o.app, o.version, sig)
	if err != nil {
		return refusal("sign", o.app, o.version, err)
	}
	if o.json {
		enc := json.NewEncoder(ios.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(ios.Out, "signed %s %s with key %s\n", m.App, m.Version, key.ID())
	fmt.Fprintf(ios.Out, "  release id  %s\n", m.ReleaseID)
	fmt.Fprintf(ios.Out, "  signatures  %d of %d\n", res.Signatures, res.Threshold)
	if res.Note != "" {
		fmt.Fprintf(ios.Out, "  note        %s\n", res.Note)
	}
	return nil
}

// refusal turns a seeder's answer into the CLI's error: a 4xx is the
// caller's to fix (exit 2), anything else a failure (exit 1).
func refusal(verb, app, version string, err error) error {
	var refused *seeder.ErrRefused
	if !errors.As(err, &refused) {
		return fmt.Errorf("%s %s %s: %w", verb, app, version, err)
	}
	msg := strings.TrimPrefix(refused.Message, fmt.Sprintf("%s %s %s: ", verb, app, version))
	msg = strings.TrimPrefix(msg, verb+": ")
	if refused.Status/100 == 4 {
		return usageErrorf("%s %s %s: seeder refused it (%d): %s", verb, app, version, refused.Status, msg)
	}
	return fmt.Errorf("%s %s %s: seeder failed (%d): %s", verb, app, version, refused.Status, msg)
}
