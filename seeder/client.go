package seeder

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// ErrUnreachable reports a seeder that could not be reached at all.
var ErrUnreachable = errors.New("seeder unreachable")

// ErrRefused reports a request the seeder answered with an error; Status
// holds the HTTP status.
type ErrRefused struct {
	Status  int
	Message string
}

func (e *ErrRefused) Error() string { return e.Message }

// Client talks to a seeder's HTTP API; the CLI and tests use it.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// ClientOptions say how a Client authenticates to the seeder.
type ClientOptions struct {
	// Token is the API token, sent as "Authorization: Bearer <token>" with
	// every request but /healthz; "" sends none. It is sent only over
	// https or to a loopback address: NewClient refuses a plain http URL
	// of another host.
	Token string
	// TLS configures https: the CAs that verify the seeder (RootCAs; nil
	// is the system's) and a client certificate (Certificates) for a
	// seeder with --tls-client-ca. Nil is the defaults.
	TLS *tls.Config
}

// NewClient returns a client for the seeder at base ("http://host:port" or
// "https://host:port"). opts, at most one, says how it authenticates.
func NewClient(base string, opts ...ClientOptions) (*Client, error) {
	if len(opts) > 1 {
		return nil, errors.New("seeder client: give at most one ClientOptions")
	}
	var o ClientOptions
	if len(opts) == 1 {
		o = opts[0]
	}
	base = strings.TrimRight(base, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("seeder URL %q must be http://host:port or https://host:port", base)
	}
	if u.Scheme == "http" && o.TLS != nil {
		return nil, fmt.Errorf("seeder URL %s is plain http, but TLS options (--tls-ca, --tls-cert) were given; use https://", base)
	}
	if u.Scheme == "http" && o.Token != "" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("seeder URL %s is plain http to another machine: the API token would travel in clear; use https:// (with --tls-ca if its CA is private) or a loopback address", base)
	}
	if o.Token != "" {
		if err := ValidateToken(o.Token); err != nil {
			return nil, err
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS.Clone()
		if tr.TLSClientConfig.MinVersion == 0 {
			tr.TLSClientConfig.MinVersion = tls.VersionTLS12
		}
	}
	hc := &http.Client{
		Transport: tr,
		// The API never redirects; following one could carry the token
		// elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Client{base: base, token: o.Token, http: hc}, nil
}

// ClientTLS builds the TLS options of a Client from PEM files: caFile
// verifies the seeder ("" = the system's CAs), certFile and keyFile are a
// client certificate (both or neither). All empty returns nil.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both --tls-cert and --tls-key")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		c, err := LoadCertificate(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// CheckAuth asks the seeder whether the client's credentials are accepted
// (GET PathAuth), so a command fails before a long upload. It returns how
// the client authenticated.
func (c *Client) CheckAuth(ctx context.Context) (string, error) {
	var res AuthResult
	return res.Method, c.call(ctx, http.MethodGet, PathAuth, nil, &res)
}

// Ping checks /healthz within timeout.
func (c *Client) Ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+PathHealth, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w at %s: /healthz answered %s", ErrUnreachable, c.base, resp.Status)
	}
	return nil
}

// Publish sends a signed manifest and streams the bundle of size bytes.
// opts, at most one, says where and how the release rolls out; none is the
// default environment under the seeder's default plan.
func (c *Client) Publish(ctx context.Context, sm release.SignedManifest, bundle io.Reader, size int64, opts ...PublishOptions) (PublishResult, error) {
	if len(opts) > 1 {
		return PublishResult{}, errors.New("publish: give at most one PublishOptions")
	}
	mb, err := json.Marshal(sm)
	if err != nil {
		return PublishResult{}, fmt.Errorf("encode manifest: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+PathReleases, bundle)
	if err != nil {
		return PublishResult{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/zstd")
	req.Header.Set(ManifestHeader, base64.StdEncoding.EncodeToString(mb))
	if len(opts) == 1 && (opts[0].Env != "" || opts[0].Plan != nil) {
		ob, err := json.Marshal(opts[0])
		if err != nil {
			return PublishResult{}, fmt.Errorf("encode rollout options: %w", err)
		}
		req.Header.Set(RolloutHeader, base64.StdEncoding.EncodeToString(ob))
	}
	var res PublishResult
	return res, c.do(req, &res)
}

// Release fetches the stored release of app at version with its signed
// manifest.
func (c *Client) Release(ctx context.Context, app, version string) (ReleaseInfo, error) {
	var info ReleaseInfo
	if err := c.call(ctx, http.MethodGet, releasePath(app, version), nil, &info); err != nil {
		return ReleaseInfo{}, err
	}
	// The API indents its answers, the signed payload too: compact it back
	// to the bytes that were signed.
	var b bytes.Buffer
	if err := json.Compact(&b, info.Signed.Payload); err != nil {
		return ReleaseInfo{}, fmt.Errorf("decode answer from %s: manifest payload: %w", c.base, err)
	}
	info.Signed.Payload = b.Bytes()
	return info, nil
}

// AddSignature adds a release key's signature to the stored manifest of
// app at version (Seeder.AddSignature).
func (c *Client) AddSignature(ctx context.Context, app, version string, sig release.Signature) (PublishResult, error) {
	var res PublishResult
	return res, c.call(ctx, http.MethodPost, releasePath(app, version)+"/signatures", sig, &res)
}

func releasePath(app, version string) string {
	return PathReleases + "/" + url.PathEscape(app) + "/" + url.PathEscape(version)
}

// Rollouts fetches the status of every rollout.
func (c *Client) Rollouts(ctx context.Context) ([]rollout.Status, error) {
	var out []rollout.Status
	return out, c.call(ctx, http.MethodGet, PathRollouts, nil, &out)
}

// Rollout fetches app's rollout in env ("" is the default environment).
func (c *Client) Rollout(ctx context.Context, app, env string) (rollout.Status, error) {
	var st rollout.Status
	return st, c.call(ctx, http.MethodGet, rolloutPath(app, "", env), nil, &st)
}

// RolloutCommand runs verb (VerbPause, VerbResume, VerbPromote, VerbAbort,
// VerbRollback) on app's rollout in env and returns the resulting status.
func (c *Client) RolloutCommand(ctx context.Context, app, env, verb string) (rollout.Status, error) {
	var st rollout.Status
	return st, c.call(ctx, http.MethodPost, rolloutPath(app, verb, env), nil, &st)
}

// RollbackTo rolls app in env back to version ("" is the previous release).
func (c *Client) RollbackTo(ctx context.Context, app, env, version string) (rollout.Status, error) {
	var st rollout.Status
	return st, c.call(ctx, http.MethodPost, rolloutPath(app, VerbRollback, env), RollbackRequest{To: version}, &st)
}

// PromoteRelease rolls the release app targets in environment from out to
// environment to under plan (nil: the seeder's default plan).
func (c *Client) PromoteRelease(ctx context.Context, app, from, to string, plan *release.Plan) (rollout.Status, error) {
	var st rollout.Status
	return st, c.call(ctx, http.MethodPost, rolloutPath(app, VerbPromoteRelease, ""), PromoteRequest{From: from, To: to, Plan: plan}, &st)
}

func rolloutPath(app, verb, env string) string {
	p := PathRollouts + "/" + url.PathEscape(app)
	if verb != "" {
		p += "/" + url.PathEscape(verb)
	}
	if env != "" {
		p += "?env=" + url.QueryEscape(env)
	}
	return p
}

// call sends body (JSON, when not nil) to path and decodes the answer into out.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(req, out)
}

// Status fetches cluster status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+PathStatus, nil)
	if err != nil {
		return Status{}, err
	}
	var st Status
	return st, c.do(req, &st)
}

func (c *Client) do(req *http.Request, out any) error {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var ae apiError
		if json.Unmarshal(body, &ae) != nil || ae.Error == "" {
			ae.Error = strings.TrimSpace(string(body))
		}
		return &ErrRefused{Status: resp.StatusCode, Message: ae.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", c.base, err)
	}
	return nil
}
