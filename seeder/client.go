package seeder

import (
	"bytes"
	"context"
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
	base string
	http *http.Client
}

// NewClient returns a client for the seeder at base ("http://host:port").
func NewClient(base string) (*Client, error) {
	base = strings.TrimRight(base, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("seeder URL %q must start with http:// or https://", base)
	}
	return &Client{base: base, http: &http.Client{}}, nil
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
