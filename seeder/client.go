package seeder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/swarmdeploy/swarm/release"
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
func (c *Client) Publish(ctx context.Context, sm release.SignedManifest, bundle io.Reader, size int64) (PublishResult, error) {
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
	var res PublishResult
	return res, c.do(req, &res)
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
