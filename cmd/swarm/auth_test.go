package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAPITokenGenerate(t *testing.T) {
	r := run(t, 10*time.Second, "api-token", "generate")
	tok := strings.TrimSpace(r.stdout)
	if b, err := base64.RawURLEncoding.DecodeString(tok); r.code != 0 || err != nil || len(b) != 32 {
		t.Fatalf("api-token generate: %d %q %v, want 32 bytes base64url", r.code, r.stdout, err)
	}
	if again := run(t, 10*time.Second, "api-token", "generate"); strings.TrimSpace(again.stdout) == tok {
		t.Error("two tokens are the same")
	}
	out := filepath.Join(t.TempDir(), "etc", "api-token")
	if r := run(t, 10*time.Second, "api-token", "generate", "--out", out); r.code != 0 || strings.Contains(r.stdout, tok) {
		t.Fatalf("api-token generate --out: %d %s %s", r.code, r.stdout, r.stderr)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v, want 0600", err, st.Mode())
	}
	before, _ := os.ReadFile(out)
	errLine(t, run(t, 10*time.Second, "api-token", "generate", "--out", out), exitUsage, "already exists")
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Error("a second generate overwrote the token file")
	}
}

// Every command that talks to the seeder needs its token: without it, or
// with another, it fails with one line (exit 2) that says what to give.
func TestCLIToken(t *testing.T) {
	c := startSeeder(t)
	wrong := filepath.Join(t.TempDir(), "wrong-token")
	if r := run(t, 10*time.Second, "api-token", "generate", "--out", wrong); r.code != 0 {
		t.Fatal(r.stderr)
	}
	open := filepath.Join(t.TempDir(), "open-token")
	if err := os.WriteFile(open, []byte(c.token), 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := repo(t, "testdata", "apps", "hello", "v1")
	commands := map[string][]string{
		"status":         {"status", "--seeder", c.api},
		"status --json":  {"status", "--seeder", c.api, "--json"},
		"rollout status": {"rollout", "status", "hello", "--seeder", c.api},
		"rollout pause":  {"rollout", "pause", "hello", "--seeder", c.api},
		"publish":        {"publish", v1, "--app", "hello", "--version", "1.0.0", "--key", c.key, "--seeder", c.api},
	}
	for name, args := range commands {
		t.Run(name, func(t *testing.T) {
			t.Setenv("SWARM_API_TOKEN", "")
			errLine(t, run(t, 20*time.Second, args...), exitUsage, "unauthorized", "--api-token-file", "SWARM_API_TOKEN")
			errLine(t, run(t, 20*time.Second, append(args, "--api-token-file", wrong)...), exitUsage, "unauthorized", "not this seeder's API token")
			errLine(t, run(t, 20*time.Second, append(args, "--api-token-file", open)...), exitUsage, "chmod 600")
			errLine(t, run(t, 20*time.Second, append(args, "--api-token-file", filepath.Join(t.TempDir(), "none"))...), exitUsage, "api-token generate")
			t.Setenv("SWARM_API_TOKEN", "short")
			errLine(t, run(t, 20*time.Second, args...), exitUsage, "SWARM_API_TOKEN", "characters")
		})
	}
	if entries := storeEntries(t, c); len(entries) != 0 {
		t.Errorf("refused publishes left %v in the store", entries)
	}

	// The right token, from the file or from the environment.
	t.Setenv("SWARM_API_TOKEN", "")
	if r := run(t, time.Minute, "publish", v1, "--app", "hello", "--version", "1.0.0", "--key", c.key, "--seeder", c.api,
		"--api-token-file", c.tokenFile); r.code != 0 {
		t.Fatalf("publish with --api-token-file: %d %s", r.code, r.stderr)
	}
	t.Setenv("SWARM_API_TOKEN", c.token)
	if r := run(t, 10*time.Second, "rollout", "status", "hello", "--seeder", c.api); r.code != 0 {
		t.Errorf("rollout status with SWARM_API_TOKEN: %d %s", r.code, r.stderr)
	}

	// A token is never sent in clear to another machine.
	errLine(t, run(t, 10*time.Second, "status", "--seeder", "http://192.0.2.1:7700"), exitUsage, "in clear", "https://")
}

// The seeder refuses to start with an API anyone could use, or one that
// takes tokens in clear from other machines: one line, exit 2.
func TestSeederRefusesInsecureAPI(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	for _, role := range []string{"release", "rollout"} {
		if r := run(t, 10*time.Second, "keygen", "--role", role, "--out", keys); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	key, token := filepath.Join(keys, "rollout.key"), filepath.Join(keys, "api-token")
	if r := run(t, 10*time.Second, "api-token", "generate", "--out", token); r.code != 0 {
		t.Fatal(r.stderr)
	}
	p := writeTestPKI(t)
	seederArgs := func(extra ...string) []string {
		return append([]string{"seeder", "--store", filepath.Join(dir, "store"), "--key", key,
			"--trust-release", filepath.Join(keys, "release.pub"), "--insecure-gossip",
			"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0"}, extra...)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"no authentication", seederArgs("--api", "127.0.0.1:0"), []string{"--api-token-file", "--tls-client-ca", "--insecure-api"}},
		{"every interface without TLS", seederArgs("--api", "0.0.0.0:0", "--api-token-file", token), []string{"0.0.0.0:0", "--tls-cert", "--insecure-api"}},
		{"client CA without TLS", seederArgs("--api", "127.0.0.1:0", "--tls-client-ca", p.clientCA), []string{"--tls-client-ca", "--tls-cert"}},
		{"cert without key", seederArgs("--api", "127.0.0.1:0", "--api-token-file", token, "--tls-cert", p.serverCert), []string{"--tls-key"}},
		{"zero bundle size", seederArgs("--api", "127.0.0.1:0", "--api-token-file", token, "--max-bundle-size", "0"), []string{"--max-bundle-size"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errLine(t, run(t, 20*time.Second, tc.args...), exitUsage, tc.wants...)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
		t.Error("a refused seeder created its store")
	}

	// --insecure-api runs it open, and says so in its log.
	addrs := filepath.Join(dir, "open.addrs")
	d := startDaemon(t, seederArgs("--api", "127.0.0.1:0", "--insecure-api", "--addr-file", addrs)...)
	api := readAddrs(t, d, addrs)["api"]
	t.Setenv("SWARM_API_TOKEN", "")
	if r := run(t, 10*time.Second, "status", "--seeder", api); r.code != 0 {
		t.Errorf("status of an --insecure-api seeder: %d %s", r.code, r.stderr)
	}
	if !strings.Contains(d.Logs(), "no authentication") {
		t.Errorf("an open API is not warned about:\n%s", d.Logs())
	}
}

// A seeder on https with a client CA: a client certificate of that CA
// authenticates a command; one of another CA does not.
func TestCLIClientCertificate(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	for _, role := range []string{"release", "rollout"} {
		if r := run(t, 10*time.Second, "keygen", "--role", role, "--out", keys); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	p := writeTestPKI(t)
	addrs := filepath.Join(dir, "seeder.addrs")
	d := startDaemon(t, "seeder", "--store", filepath.Join(dir, "store"), "--key", filepath.Join(keys, "rollout.key"),
		"--trust-release", filepath.Join(keys, "release.pub"), "--insecure-gossip",
		"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--api", "127.0.0.1:0", "--addr-file", addrs,
		"--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--tls-client-ca", p.clientCA)
	api := readAddrs(t, d, addrs)["api"]
	if !strings.HasPrefix(api, "https://") {
		t.Fatalf("api %s is not https", api)
	}
	t.Setenv("SWARM_API_TOKEN", "")
	status := func(extra ...string) result {
		return run(t, 20*time.Second, append([]string{"status", "--seeder", api}, extra...)...)
	}
	if r := status("--tls-ca", p.serverCA, "--tls-cert", p.clientCert, "--tls-key", p.clientKey); r.code != 0 {
		t.Fatalf("status with a client certificate: %d %s", r.code, r.stderr)
	}
	errLine(t, status("--tls-ca", p.serverCA, "--tls-cert", p.otherCert, "--tls-key", p.otherKey), exitUsage, "401", "--tls-client-ca")
	errLine(t, status("--tls-ca", p.serverCA), exitUsage, "401")
	errLine(t, status("--tls-cert", p.clientCert, "--tls-key", p.clientKey), exitFailure, "certificate", "--tls-ca")
	errLine(t, status("--tls-ca", p.serverCA, "--tls-cert", p.clientCert), exitUsage, "--tls-key")
	errLine(t, run(t, 10*time.Second, "status", "--seeder", strings.Replace(api, "https", "http", 1), "--tls-ca", p.serverCA), exitUsage, "https://")
}

// pkiFiles are PEM files: a server CA and a certificate for 127.0.0.1, a
// client CA and a client certificate, and one from another CA.
type pkiFiles struct {
	serverCA, serverCert, serverKey string
	clientCA, clientCert, clientKey string
	otherCert, otherKey             string
}

func writeTestPKI(t *testing.T) pkiFiles {
	t.Helper()
	dir := t.TempDir()
	var serial int64
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		}
		if ca == nil {
			tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
			ca, caKey = tmpl, key
		} else {
			tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return c, key, write(name+".crt", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kder)
	}
	var p pkiFiles
	sca, scaKey, scaFile, _ := issue("server-ca", nil, nil, 0)
	cca, ccaKey, ccaFile, _ := issue("client-ca", nil, nil, 0)
	oca, ocaKey, _, _ := issue("other-ca", nil, nil, 0)
	p.serverCA, p.clientCA = scaFile, ccaFile
	_, _, p.serverCert, p.serverKey = issue("seeder", sca, scaKey, x509.ExtKeyUsageServerAuth)
	_, _, p.clientCert, p.clientKey = issue("engineer", cca, ccaKey, x509.ExtKeyUsageClientAuth)
	_, _, p.otherCert, p.otherKey = issue("intruder", oca, ocaKey, x509.ExtKeyUsageClientAuth)
	return p
}
