package seeder

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmdeploy/swarm/release"
)

// syncBuffer is a log sink that tests read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func bufferLogger(w io.Writer) *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(w), zap.DebugLevel))
}

// endpoints are every API request but /healthz, with a body where one is
// needed; each must be refused without credentials.
var endpoints = []struct{ method, path, body string }{
	{http.MethodGet, PathAuth, ""},
	{http.MethodGet, PathReleases, ""},
	{http.MethodPost, PathReleases, "x"},
	{http.MethodGet, PathStatus, ""},
	{http.MethodGet, PathRollouts, ""},
	{http.MethodGet, PathRollouts + "/web?env=prod", ""},
	{http.MethodPost, PathRollouts + "/web/" + VerbPause, ""},
	{http.MethodPost, PathRollouts + "/web/" + VerbResume, ""},
	{http.MethodPost, PathRollouts + "/web/" + VerbPromote, ""},
	{http.MethodPost, PathRollouts + "/web/" + VerbAbort, ""},
	{http.MethodPost, PathRollouts + "/web/" + VerbRollback, `{"to": "1.0.0"}`},
	{http.MethodPost, PathRollouts + "/web/" + VerbPromoteRelease, `{"from": "staging", "to": "prod"}`},
	{http.MethodGet, "/v1/nothing-here", ""},
	{http.MethodPost, PathHealth, ""},
}

// rawRequest sends one request with the Authorization header auth ("" =
// none) and returns the status and body.
func rawRequest(t *testing.T, hc *http.Client, base, method, path, body, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s %s: 401 without WWW-Authenticate", method, path)
	}
	return resp.StatusCode, string(b)
}

// oneErrorLine checks a refusal body: one line of JSON, {"error": ...},
// that mentions every want.
func oneErrorLine(t *testing.T, body string, wants ...string) {
	t.Helper()
	if strings.Count(strings.TrimSpace(body), "\n") != 0 {
		t.Errorf("error body is not one line: %q", body)
	}
	var ae apiError
	if err := json.Unmarshal([]byte(body), &ae); err != nil || ae.Error == "" {
		t.Fatalf("error body is not {\"error\": ...}: %q", body)
	}
	for _, w := range wants {
		if !strings.Contains(ae.Error, w) {
			t.Errorf("error %q does not mention %q", ae.Error, w)
		}
	}
}

func TestAPIToken(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	base, hc := f.s.APIURL(), http.DefaultClient
	wrong := testToken(t)
	for _, e := range endpoints {
		t.Run(e.method+" "+e.path, func(t *testing.T) {
			code, body := rawRequest(t, hc, base, e.method, e.path, e.body, "")
			if code != http.StatusUnauthorized {
				t.Fatalf("without a token: %d %s, want 401", code, body)
			}
			oneErrorLine(t, body, "--api-token-file", TokenEnv)
			for _, auth := range []string{"Bearer " + wrong, "Bearer " + f.token[:len(f.token)-1], "Bearer", "Basic " + f.token, f.token} {
				if code, body := rawRequest(t, hc, base, e.method, e.path, e.body, auth); code != http.StatusUnauthorized {
					t.Errorf("with Authorization %q: %d %s, want 401", strings.Replace(auth, f.token, "<token>", 1), code, body)
				}
			}
			code, body = rawRequest(t, hc, base, e.method, e.path, e.body, "Bearer "+f.token)
			if code == http.StatusUnauthorized || code >= 500 {
				t.Errorf("with the token: %d %s", code, body)
			}
		})
	}
	if code, body := rawRequest(t, hc, base, http.MethodGet, PathHealth, "", ""); code != http.StatusOK {
		t.Errorf("/healthz without a token: %d %s, want 200", code, body)
	}
	if code, body := rawRequest(t, hc, base, http.MethodGet, PathAuth, "", "Bearer "+wrong); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d %s", code, body)
	} else {
		oneErrorLine(t, body, "not this seeder's API token")
	}

	// The client sends it; a client with another token is refused.
	if m, err := f.c.CheckAuth(context.Background()); err != nil || m != "token" {
		t.Errorf("CheckAuth = %q, %v; want token", m, err)
	}
	if _, err := f.c.Status(context.Background()); err != nil {
		t.Errorf("status with the token: %v", err)
	}
	for _, tok := range []string{"", wrong} {
		c, err := NewClient(base, ClientOptions{Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Status(context.Background())
		var refused *ErrRefused
		if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
			t.Errorf("status with token %v: %v, want 401", tok != "", err)
		}
		if err := c.Ping(context.Background(), 5*time.Second); err != nil {
			t.Errorf("ping needs no token: %v", err)
		}
	}
}

// The token is never written to the log.
func TestAPITokenNotLogged(t *testing.T) {
	key, _ := release.GenerateKey(rand.Reader)
	var logs syncBuffer
	tok := testToken(t)
	s, err := New(Config{StoreDir: t.TempDir(), Key: key, Name: "seeder", GossipAddr: "127.0.0.1:0", TorrentAddr: "127.0.0.1:0",
		APIAddr: "127.0.0.1:0", APIToken: tok, Trust: release.Trust{Release: release.NewKeyring(releaseKeyOf(key).Public())}}, bufferLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Run(ctx) }()
	wrong := testToken(t)
	rawRequest(t, http.DefaultClient, s.APIURL(), http.MethodGet, PathStatus, "", "Bearer "+wrong)
	rawRequest(t, http.DefaultClient, s.APIURL(), http.MethodGet, PathStatus, "", "Bearer "+tok)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "api request refused") {
		t.Errorf("the refusal is not logged:\n%s", out)
	}
	for _, secret := range []string{tok, wrong} {
		if strings.Contains(out, secret) {
			t.Errorf("a token is in the log:\n%s", out)
		}
	}
}

// testPKI is a server CA with a certificate for 127.0.0.1, and client
// certificates from the client CA and from another CA.
type testPKI struct {
	serverCA            *x509.CertPool
	server              tls.Certificate
	clientCA            *x509.CertPool
	client, otherCA     tls.Certificate
	serverUsageAsClient tls.Certificate // from the client CA, but for server auth only
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	serverCA, serverCAKey := newCA(t, "server CA")
	clientCA, clientCAKey := newCA(t, "client CA")
	otherCA, otherCAKey := newCA(t, "other CA")
	var p testPKI
	p.serverCA, p.clientCA = x509.NewCertPool(), x509.NewCertPool()
	p.serverCA.AddCert(serverCA)
	p.clientCA.AddCert(clientCA)
	p.server = leaf(t, serverCA, serverCAKey, "seeder", x509.ExtKeyUsageServerAuth)
	p.client = leaf(t, clientCA, clientCAKey, "release-engineer", x509.ExtKeyUsageClientAuth)
	p.otherCA = leaf(t, otherCA, otherCAKey, "intruder", x509.ExtKeyUsageClientAuth)
	p.serverUsageAsClient = leaf(t, clientCA, clientCAKey, "not-a-client", x509.ExtKeyUsageServerAuth)
	return p
}

var serial int64

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestAPIClientCertificate(t *testing.T) {
	p := newTestPKI(t)
	key, _ := release.GenerateKey(rand.Reader)
	tok := testToken(t)
	f := startSeederConfig(t, Config{StoreDir: t.TempDir(), Key: key, APICert: &p.server, APIClientCAs: p.clientCA, APIToken: tok})
	if !strings.HasPrefix(f.s.APIURL(), "https://") {
		t.Fatalf("API URL %s is not https", f.s.APIURL())
	}
	ctx := context.Background()
	client := func(cert *tls.Certificate, token string) *Client {
		tc := &tls.Config{RootCAs: p.serverCA}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c, err := NewClient(f.s.APIURL(), ClientOptions{TLS: tc, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	good := client(&p.client, "")
	if m, err := good.CheckAuth(ctx); err != nil || m != "client-cert" {
		t.Fatalf("client certificate from the client CA: %q, %v", m, err)
	}
	b := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	if _, err := good.PublishBundle(ctx, b, nil); err != nil {
		t.Fatalf("publish with a client certificate: %v", err)
	}

	for name, c := range map[string]*Client{
		"another CA":         client(&p.otherCA, ""),
		"not for client use": client(&p.serverUsageAsClient, ""),
		"no certificate":     client(nil, ""),
	} {
		_, err := c.Status(ctx)
		var refused *ErrRefused
		if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
			t.Errorf("%s: %v, want 401", name, err)
			continue
		}
		t.Logf("%s: %s", name, refused.Message)
	}
	// A token still works beside a certificate the seeder does not accept.
	if m, err := client(&p.otherCA, tok).CheckAuth(ctx); err != nil || m != "token" {
		t.Errorf("token over https: %q, %v", m, err)
	}
	// A client that does not trust the seeder's CA does not talk to it.
	c, err := NewClient(f.s.APIURL(), ClientOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckAuth(ctx); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("client without the server CA: %v", err)
	}
}

func TestClientRefusesTokenInClear(t *testing.T) {
	tok := testToken(t)
	for _, tc := range []struct {
		base string
		opts ClientOptions
		ok   bool
	}{
		{"http://127.0.0.1:7700", ClientOptions{Token: tok}, true},
		{"http://[::1]:7700", ClientOptions{Token: tok}, true},
		{"http://localhost:7700", ClientOptions{Token: tok}, true},
		{"https://seeder.example:7700", ClientOptions{Token: tok}, true},
		{"http://seeder.example:7700", ClientOptions{}, true},
		{"http://seeder.example:7700", ClientOptions{Token: tok}, false},
		{"http://10.0.0.1:7700", ClientOptions{Token: tok}, false},
		{"http://127.0.0.1:7700", ClientOptions{TLS: &tls.Config{}}, false},
		{"http://127.0.0.1:7700", ClientOptions{Token: "short"}, false},
		{"ftp://127.0.0.1:7700", ClientOptions{}, false},
	} {
		_, err := NewClient(tc.base, tc.opts)
		if (err == nil) != tc.ok {
			t.Errorf("NewClient(%s, token %v, tls %v) = %v, want ok %v", tc.base, tc.opts.Token != "", tc.opts.TLS != nil, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("the error carries the token: %v", err)
		}
	}
}

// Two publishes of one version with different content race: exactly one
// is stored, the other is refused with a conflict.
func TestConcurrentConflictingPublish(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	ctx := context.Background()
	bundles := []*Bundle{
		pack(t, f, appTree(t, "a", 64<<10), "web", "1.0.0"),
		pack(t, f, appTree(t, "b", 64<<10), "web", "1.0.0"),
	}
	// Each upload sends all but its last byte, then waits until both
	// are in the store's upload area (both passed the early check).
	finish := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, len(bundles))
	for i, b := range bundles {
		data, err := os.ReadFile(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := pw.Write(data[:len(data)-1])
			if err == nil {
				<-finish
				_, err = pw.Write(data[len(data)-1:])
			}
			pw.CloseWithError(err)
		}()
		go func() {
			defer wg.Done()
			_, errs[i] = f.c.Publish(ctx, b.Signed, pr, b.Manifest.BundleSize)
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		es, _ := os.ReadDir(filepath.Join(f.store, "tmp"))
		if len(es) == 2 {
			break
		}
		if time.Now().After(deadline) {
			close(finish)
			wg.Wait()
			t.Fatalf("both uploads did not start: %d in tmp; errors %v", len(es), errs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(finish)
	wg.Wait()

	wins := 0
	for i, err := range errs {
		var refused *ErrRefused
		switch {
		case err == nil:
			wins++
		case errors.As(err, &refused) && refused.Status == http.StatusConflict:
			t.Logf("publish %d refused: %s", i, refused.Message)
		default:
			t.Errorf("publish %d: %v, want success or 409", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of 2 conflicting publishes succeeded, want exactly 1", wins)
	}
	n := 0
	for _, r := range f.s.store.list() {
		if r.Manifest.App == "web" && r.Manifest.Version == "1.0.0" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the store holds %d releases of web 1.0.0", n)
	}
	if es, _ := os.ReadDir(filepath.Join(f.store, "releases")); len(es) != 1 {
		t.Errorf("releases dir holds %d entries, want 1", len(es))
	}
}

func TestPublishTooLarge(t *testing.T) {
	key, _ := release.GenerateKey(rand.Reader)
	f := startSeederConfig(t, Config{StoreDir: t.TempDir(), Key: key, MaxBundleSize: 32 << 10})
	ctx := context.Background()
	small := pack(t, f, appTree(t, "small", 1<<10), "web", "1.0.0")
	if _, err := f.c.PublishBundle(ctx, small, nil); err != nil {
		t.Fatalf("a bundle within the limit: %v", err)
	}
	before := storeListing(t, f.store)
	big := pack(t, f, appTree(t, "big", 256<<10), "web", "2.0.0")

	// With a Content-Length.
	_, err := f.c.PublishBundle(ctx, big, nil)
	var refused *ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusRequestEntityTooLarge || !strings.Contains(refused.Message, "--max-bundle-size") {
		t.Fatalf("oversize publish: %v, want 413 naming --max-bundle-size", err)
	}
	t.Log(refused.Message)

	// Chunked, without a Content-Length: the manifest's size decides.
	data, err := os.ReadFile(big.Path)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := json.Marshal(big.Signed)
	req, _ := http.NewRequest(http.MethodPost, f.s.APIURL()+PathReleases, io.MultiReader(bytes.NewReader(data)))
	req.ContentLength = -1
	req.Header.Set(ManifestHeader, base64.StdEncoding.EncodeToString(mb))
	resp := f.send(t, req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversize publish: %d %s, want 413", resp.StatusCode, body)
	}
	oneErrorLine(t, string(body), "--max-bundle-size")

	if after := storeListing(t, f.store); !slices.Equal(before, after) {
		t.Errorf("refused publishes changed the store:\nbefore %v\nafter  %v", before, after)
	}
}

func TestTokenFormat(t *testing.T) {
	gen := testToken(t)
	if err := ValidateToken(gen); err != nil || len(gen) != 43 {
		t.Fatalf("generated token %d characters: %v", len(gen), err)
	}
	for _, tc := range []struct {
		tok string
		ok  bool
	}{
		{strings.Repeat("a", 32), true},
		{strings.Repeat("A0-._~+/", 4) + "==", true},
		{strings.Repeat("a", 31), false},
		{strings.Repeat("=", 40), false},
		{strings.Repeat("a", 31) + "=", false},
		{strings.Repeat("a", 1025), false},
		{strings.Repeat("a", 32) + " b", false},
		{strings.Repeat("a", 32) + "\n", false},
		{strings.Repeat("a", 16) + "=" + strings.Repeat("a", 16), false},
	} {
		err := ValidateToken(tc.tok)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateToken(%q) = %v, want ok %v", tc.tok, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.tok) {
			t.Errorf("the error carries the token: %v", err)
		}
	}

	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"good":        {gen + "\n", 0o600, ""},
		"group read":  {gen, 0o640, "chmod 600"},
		"short":       {"secret", 0o600, "api-token generate"},
		"empty":       {"", 0o600, "0 characters"},
		"two in file": {gen + "\n" + gen, 0o600, "character"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		tok, err := ReadTokenFile(p)
		switch {
		case tc.want == "" && (err != nil || tok != gen):
			t.Errorf("%s: %q, %v", name, tok, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want mention of %q", name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), gen):
			t.Errorf("%s: the error carries the token: %v", name, err)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "api-token generate --out") {
		t.Errorf("missing file: %v", err)
	}
}

// A publish may take longer than the read timeout as long as bytes keep
// arriving; one that stalls fails with 408 and leaves the store as it was.
func TestPublishDeadlines(t *testing.T) {
	key, _ := release.GenerateKey(rand.Reader)
	f := startSeederTuned(t, Config{StoreDir: t.TempDir(), Key: key}, func(s *Seeder) {
		s.limits.read, s.limits.write, s.limits.stall = 300*time.Millisecond, 300*time.Millisecond, 2*time.Second
	})
	ctx := context.Background()
	b := pack(t, f, appTree(t, "slow", 64<<10), "web", "1.0.0")
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}

	// Slow: the bundle in 20 pieces 50 ms apart, about three read timeouts.
	pr, pw := io.Pipe()
	go func() {
		step := len(data)/20 + 1
		for off := 0; off < len(data); off += step {
			if _, err := pw.Write(data[off:min(off+step, len(data))]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		pw.Close()
	}()
	start := time.Now()
	if _, err := f.c.Publish(ctx, b.Signed, pr, b.Manifest.BundleSize); err != nil {
		t.Fatalf("a slow, moving publish: %v", err)
	}
	if took := time.Since(start); took < f.s.limits.read {
		t.Fatalf("the slow publish took %s, not longer than the read timeout: the test proves nothing", took)
	}

	// Stalled: half the bundle, then nothing.
	f = startSeederTuned(t, Config{StoreDir: t.TempDir(), Key: key}, func(s *Seeder) { s.limits.stall = 300 * time.Millisecond })
	before := storeListing(t, f.store)
	b2 := pack(t, f, appTree(t, "stalled", 64<<10), "web", "2.0.0")
	data2, err := os.ReadFile(b2.Path)
	if err != nil {
		t.Fatal(err)
	}
	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	go func() { _, _ = pw2.Write(data2[:len(data2)/2]) }()
	_, err = f.c.Publish(ctx, b2.Signed, pr2, b2.Manifest.BundleSize)
	var refused *ErrRefused
	if !errors.As(err, &refused) || refused.Status != http.StatusRequestTimeout {
		t.Fatalf("a stalled publish: %v, want 408", err)
	}
	t.Log(refused.Message)
	pw2.Close()
	if after := storeListing(t, f.store); !slices.Equal(before, after) {
		t.Errorf("a stalled publish changed the store:\nbefore %v\nafter  %v", before, after)
	}
}
