package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/swarmdeploy/swarm/seeder"
)

// apiFlags say how a command reaches the seeder's API and authenticates:
// shared by publish, status and rollout.
type apiFlags struct {
	seeder                 string
	tokenFile              string
	tlsCA, tlsCert, tlsKey string
}

func (a *apiFlags) add(f *pflag.FlagSet) {
	f.StringVar(&a.seeder, "seeder", "http://127.0.0.1:7700", "seeder API URL (http:// only to a loopback address when a token is sent)")
	f.StringVar(&a.tokenFile, "api-token-file", "", "file holding the seeder's API token (mode 0600; default: $"+seeder.TokenEnv+")")
	f.StringVar(&a.tlsCA, "tls-ca", "", "PEM CA certificate(s) that verify an https seeder (default: the system's)")
	f.StringVar(&a.tlsCert, "tls-cert", "", "PEM client certificate, for a seeder with --tls-client-ca")
	f.StringVar(&a.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
}

// client builds the seeder client: the token from --api-token-file, else
// from $SWARM_API_TOKEN; TLS from the --tls-* files. what prefixes errors.
func (a *apiFlags) client(what string) (*seeder.Client, error) {
	var o seeder.ClientOptions
	switch env := os.Getenv(seeder.TokenEnv); {
	case a.tokenFile != "":
		tok, err := seeder.ReadTokenFile(a.tokenFile)
		if err != nil {
			return nil, usageErrorf("%s: --api-token-file: %w", what, err)
		}
		o.Token = tok
	case env != "":
		if err := seeder.ValidateToken(env); err != nil {
			return nil, usageErrorf("%s: $%s: %w", what, seeder.TokenEnv, err)
		}
		o.Token = env
	}
	tc, err := seeder.ClientTLS(a.tlsCA, a.tlsCert, a.tlsKey)
	if err != nil {
		return nil, usageErrorf("%s: %w", what, err)
	}
	o.TLS = tc
	c, err := seeder.NewClient(a.seeder, o)
	if err != nil {
		return nil, usageErrorf("%s: --seeder: %w", what, err)
	}
	return c, nil
}

// checkAPI asks the seeder whether it accepts the client's credentials
// before a command does anything long. A seeder without the check (older
// than it) is taken as accepting.
func checkAPI(ctx context.Context, what string, c *seeder.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.CheckAuth(ctx)
	var refused *seeder.ErrRefused
	switch {
	case err == nil, errors.As(err, &refused) && refused.Status == http.StatusNotFound:
		return nil
	case refused != nil && refused.Status == http.StatusUnauthorized:
		return usageErrorf("%s: seeder refused the credentials (401): %s", what, refused.Message)
	case refused != nil:
		return fmt.Errorf("%s: seeder failed (%d): %s", what, refused.Status, refused.Message)
	default:
		return fmt.Errorf("%s: %w; check --seeder (and --tls-ca for https) and that 'swarm seeder' is running", what, err)
	}
}
