package seeder

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/internal/secretfile"
)

// Who may use the API: every path but PathHealth needs a bearer token
// (Config.APIToken) or a client certificate issued by Config.APIClientCAs.

// TokenEnv is the environment variable the CLI reads the API token from
// when no --api-token-file is given.
const TokenEnv = "SWARM_API_TOKEN"

// MinTokenLen and maxTokenLen bound an API token's length in characters.
const (
	MinTokenLen = 32
	maxTokenLen = 1024
)

// GenerateToken returns a new random API token: 32 bytes, base64url
// without padding (43 characters).
func GenerateToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ValidateToken checks that s can be a bearer token: at least MinTokenLen
// characters of RFC 6750's token68 alphabet (A-Z a-z 0-9 - . _ ~ + /,
// then optional '='). The error never contains the token.
func ValidateToken(s string) error {
	body := strings.TrimRight(s, "=")
	if len(body) < MinTokenLen || len(s) > maxTokenLen {
		return fmt.Errorf("API token has %d characters; it needs %d to %d: make one with 'swarm api-token generate'", len(s), MinTokenLen, maxTokenLen)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return fmt.Errorf("API token has a character outside A-Z a-z 0-9 - . _ ~ + / at offset %d; make one with 'swarm api-token generate'", i)
		}
	}
	return nil
}

// ReadTokenFile reads an API token from path: one token, surrounding
// whitespace ignored. Like private keys, a token file readable by group or
// others is refused. Errors name the file, never the token.
func ReadTokenFile(path string) (string, error) {
	b, err := secretfile.Read(path, "make one with 'swarm api-token generate --out "+path+"'")
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if err := ValidateToken(tok); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return tok, nil
}

// LoadCertificate loads a PEM certificate (chain) and its private key.
func LoadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// LoadCertPool loads every PEM certificate in path as a pool of CAs.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// isLoopbackHost reports whether host (no port) is a loopback address or
// "localhost". An empty host (every interface) is not.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Authentication refusals, in the JSON error of a 401. Each says what to do.
const (
	msgNoCredentials = "unauthorized: this seeder API needs a bearer token (Authorization: Bearer <token>) or a client certificate from its --tls-client-ca; swarm commands read the token from --api-token-file FILE or " + TokenEnv
	msgBadToken      = "unauthorized: the bearer token is not this seeder's API token; give the token of the seeder's --api-token-file (--api-token-file FILE or " + TokenEnv + ")"
	msgBadScheme     = "unauthorized: the Authorization header is not \"Bearer <token>\"; send Authorization: Bearer <token>"
	msgBadCert       = "unauthorized: the client certificate is not issued for client authentication by this seeder's --tls-client-ca; use a certificate from that CA (--tls-cert, --tls-key) or the API token (--api-token-file FILE or " + TokenEnv + ")"
)

// authenticator decides whether a request may use the API.
type authenticator struct {
	tokenHash [sha256.Size]byte // of Config.APIToken
	hasToken  bool
	clientCAs *x509.CertPool // nil: client certificates do not authenticate
	open      bool           // neither: Config.InsecureAPI let every request in
	log       *zap.Logger
}

func newAuthenticator(cfg Config, log *zap.Logger) *authenticator {
	a := &authenticator{clientCAs: cfg.APIClientCAs, log: log}
	if cfg.APIToken != "" {
		a.tokenHash, a.hasToken = sha256.Sum256([]byte(cfg.APIToken)), true
	}
	a.open = !a.hasToken && a.clientCAs == nil
	return a
}

// wrap lets a request through to next only once it is authenticated;
// otherwise it answers 401 with one JSON error line.
func (a *authenticator) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, reason := a.check(r)
		if method == "" {
			a.log.Info("api request refused", zap.String("remote", r.RemoteAddr), zap.String("method", r.Method),
				zap.String("path", r.URL.Path), zap.String("reason", reason))
			w.Header().Set("WWW-Authenticate", `Bearer realm="swarm"`)
			writeError(w, http.StatusUnauthorized, reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// check returns how r authenticated ("token", "client-cert", "none"), or
// "" and why it did not. A verified client certificate is enough; else the
// bearer token must match, compared in constant time (of its hash, so the
// length does not leak either).
func (a *authenticator) check(r *http.Request) (method, reason string) {
	if a.open {
		return "none", ""
	}
	certOK, certGiven := a.clientCert(r.TLS)
	if certOK {
		return "client-cert", ""
	}
	h := r.Header.Get("Authorization")
	switch {
	case h == "" && certGiven:
		return "", msgBadCert
	case h == "" || !a.hasToken:
		return "", msgNoCredentials
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", msgBadScheme
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], a.tokenHash[:]) != 1 {
		return "", msgBadToken
	}
	return "token", ""
}

// clientCert verifies the client's certificate chain, if it gave one,
// against the client CAs for client authentication. The TLS handshake has
// already checked that the client holds the certificate's key.
func (a *authenticator) clientCert(cs *tls.ConnectionState) (ok, given bool) {
	if a.clientCAs == nil || cs == nil || len(cs.PeerCertificates) == 0 {
		return false, false
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: a.clientCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err == nil, true
}

// errNoAuth is Validate's refusal of an API anyone could use, unless
// Config.InsecureAPI.
var errNoAuth = errors.New("seeder: the API would accept anyone: give --api-token-file FILE (make one with 'swarm api-token generate --out FILE') or --tls-client-ca FILE, or --insecure-api to run it open")
