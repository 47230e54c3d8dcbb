package seeder

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// ManifestHeader carries the signed manifest (base64 of its JSON) on a
// publish request; the body is the bundle itself, streamed.
const ManifestHeader = "Swarm-Manifest"

// RolloutHeader, optional on a publish request, carries where and how the
// release rolls out: base64 of the JSON of PublishOptions,
// {"env": "prod", "plan": {...}}.
const RolloutHeader = "Swarm-Rollout"

// API paths. A rollout is addressed as PathRollouts/{app}?env=E (E defaults
// to release.DefaultEnv) and commanded with POST PathRollouts/{app}/{verb}.
// Every path but PathHealth needs authentication; GET PathAuth does nothing
// else, so a client can check its credentials before a long upload.
const (
	PathHealth   = "/healthz"
	PathAuth     = "/v1/auth"
	PathReleases = "/v1/releases"
	PathStatus   = "/v1/status"
	PathRollouts = "/v1/rollouts"
)

// apiLimits are the API server's limits. A request's headers must arrive
// within readHeader; every request but a publish must be read within read
// and answered within write. A publish streams a bundle of up to
// Config.MaxBundleSize (64 GiB by default: hours on a slow link), so it has
// no total limit: it fails once no byte has arrived for stall, and its
// answer, written after the bundle is verified, gets write from then.
type apiLimits struct {
	readHeader, read, write, idle, stall time.Duration
	maxHeaderBytes                       int
}

// defaultAPILimits are the limits of every seeder; tests shorten them.
func defaultAPILimits() apiLimits {
	return apiLimits{
		readHeader: 10 * time.Second,
		read:       time.Minute,
		write:      time.Minute,
		idle:       2 * time.Minute,
		stall:      time.Minute,
		// A signed manifest and a rollout plan are a few KiB.
		maxHeaderBytes: 64 << 10,
	}
}

// ErrTooLarge: a published bundle is larger than Config.MaxBundleSize.
var ErrTooLarge = errors.New("bundle too large")

// VerbPromoteRelease is the rollout command that promotes a release from
// one environment to another (PromoteRequest).
const VerbPromoteRelease = "promote-release"

// RollbackRequest is the optional body of a rollback: the version to go
// back to, in the seeder's store; empty means the previous release.
type RollbackRequest struct {
	To string `json:"to,omitempty"`
}

// PromoteRequest is the body of a promote-release.
type PromoteRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Plan is the rollout plan in To; nil is the seeder's default plan.
	Plan *release.Plan `json:"plan,omitempty"`
}

// maxCommandBody bounds the JSON body of a rollout command.
const maxCommandBody = 64 << 10

// apiError is the body of every non-2xx answer.
type apiError struct {
	Error string `json:"error"`
}

// apiListener wraps ln in TLS when the API has a certificate. A client
// certificate is requested, not required: the authenticator verifies it
// against Config.APIClientCAs, and a client without one may use a token.
func (s *Seeder) apiListener(ln net.Listener) net.Listener {
	if s.cfg.APICert == nil {
		return ln
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{*s.cfg.APICert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	if s.cfg.APIClientCAs != nil {
		tc.ClientAuth = tls.RequestClientCert
	}
	return tls.NewListener(ln, tc)
}

// apiServer is the API's HTTP server with its limits. It speaks HTTP/1.1
// only: one long upload per connection, deadlines per request.
func (s *Seeder) apiServer() *http.Server {
	return &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: s.limits.readHeader,
		ReadTimeout:       s.limits.read,
		WriteTimeout:      s.limits.write,
		IdleTimeout:       s.limits.idle,
		MaxHeaderBytes:    s.limits.maxHeaderBytes,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
}

// apiAuthMethods names the ways the API authenticates, for the start log.
func (s *Seeder) apiAuthMethods() []string {
	var out []string
	if s.cfg.APIToken != "" {
		out = append(out, "token")
	}
	if s.cfg.APIClientCAs != nil {
		out = append(out, "client-cert")
	}
	if len(out) == 0 {
		out = append(out, "none")
	}
	return out
}

// routes serves /healthz to anyone and every other path, known or not,
// only to an authenticated client.
func (s *Seeder) routes() http.Handler {
	auth := newAuthenticator(s.cfg, s.log)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathAuth, func(w http.ResponseWriter, r *http.Request) {
		method, _ := auth.check(r)
		writeJSON(w, http.StatusOK, AuthResult{Method: method})
	})
	mux.HandleFunc("POST "+PathReleases, s.handlePublish)
	mux.HandleFunc("GET "+PathReleases, s.handleList)
	mux.HandleFunc("GET "+PathReleases+"/{app}/{version}", func(w http.ResponseWriter, r *http.Request) {
		info, err := s.Release(r.PathValue("app"), r.PathValue("version"))
		s.answer(w, "release", info, err)
	})
	mux.HandleFunc("POST "+PathReleases+"/{app}/{version}/signatures", s.handleSign)
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	mux.HandleFunc("GET "+PathRollouts, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Rollouts())
	})
	mux.HandleFunc("GET "+PathRollouts+"/{app}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Rollout(r.PathValue("app"), r.URL.Query().Get("env"))
		s.answer(w, "rollout status", st, err)
	})
	mux.HandleFunc("POST "+PathRollouts+"/{app}/{verb}", s.handleRolloutCommand)

	outer := http.NewServeMux()
	outer.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	outer.Handle("/", auth.wrap(mux))
	return outer
}

// AuthResult is the answer of GET PathAuth: how the request authenticated
// ("token", "client-cert", or "none" on an API without authentication).
type AuthResult struct {
	Method string `json:"method"`
}

func (s *Seeder) handleRolloutCommand(w http.ResponseWriter, r *http.Request) {
	app, verb, env := r.PathValue("app"), r.PathValue("verb"), r.URL.Query().Get("env")
	var (
		st  rollout.Status
		err error
	)
	switch verb {
	case VerbPause, VerbResume, VerbPromote, VerbAbort:
		st, err = s.Command(app, env, verb)
	case VerbRollback:
		var req RollbackRequest
		if err = readBody(r, &req); err == nil {
			st, err = s.RollbackTo(app, env, req.To)
		}
	case VerbPromoteRelease:
		var req PromoteRequest
		if err = readBody(r, &req); err == nil {
			st, err = s.PromoteRelease(app, req.From, req.To, req.Plan)
		}
	default:
		err = fmt.Errorf("%w rollout command %q: use pause, resume, promote, abort, rollback or promote-release", release.ErrInvalid, verb)
	}
	s.answer(w, "rollout "+verb, st, err)
}

// readBody decodes an optional JSON body into v.
func readBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxCommandBody+1))
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if len(b) > maxCommandBody {
		return fmt.Errorf("%w request: body over %d bytes", release.ErrInvalid, maxCommandBody)
	}
	return decodeCommand(b, v)
}

// answer writes v, or err as an apiError with the status apiStatus maps it
// to.
func (s *Seeder) answer(w http.ResponseWriter, what string, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	code := apiStatus(err)
	if code >= 500 {
		s.log.Error(what+" failed", zap.Error(err))
	} else {
		s.log.Info(what+" refused", zap.Error(err))
	}
	writeJSON(w, code, apiError{err.Error()})
}

func (s *Seeder) handlePublish(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.MaxBundleSize
	if r.ContentLength > limit {
		s.refuseTooLarge(w, r.ContentLength)
		return
	}
	sm, opts, err := decodePublish(r.Header.Get(ManifestHeader), r.Header.Get(RolloutHeader))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	if m, err := sm.Unverified(); err == nil && m.BundleSize > limit {
		s.refuseTooLarge(w, m.BundleSize)
		return
	}
	// The upload may take hours: no total deadline, but one that moves
	// with every byte that arrives (apiLimits.stall).
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	body := &stallReader{r: http.MaxBytesReader(w, r.Body, limit), rc: rc, stall: s.limits.stall}
	body.extend()
	res, err := s.Publish(r.Context(), sm, body, opts)
	_ = rc.SetWriteDeadline(time.Now().Add(s.limits.write))
	if err != nil {
		code := apiStatus(err)
		if code >= 500 {
			s.log.Error("publish failed", zap.Error(err))
		} else {
			s.log.Warn("publish refused", zap.Error(err))
		}
		writeJSON(w, code, apiError{err.Error()})
		return
	}
	reachable := len(s.agents(res.Env))
	res.Reachable = &reachable
	if reachable == 0 && !res.Pending {
		s.log.Warn("published, but no agent in the environment is a member: the release reaches nodes when they join",
			zap.String("app", res.App), zap.String("env", res.Env), zap.String("version", res.Version))
	}
	code := http.StatusCreated
	switch {
	case res.Existed:
		code = http.StatusOK
	case res.Pending:
		code = http.StatusAccepted
	}
	writeJSON(w, code, res)
}

func (s *Seeder) refuseTooLarge(w http.ResponseWriter, size int64) {
	err := fmt.Errorf("%w: %d bytes is over this seeder's --max-bundle-size of %d bytes; raise --max-bundle-size on the seeder or publish less", ErrTooLarge, size, s.cfg.MaxBundleSize)
	s.log.Warn("publish refused", zap.Error(err))
	writeError(w, http.StatusRequestEntityTooLarge, err.Error())
}

// stallReader moves the connection's read deadline stall ahead as bytes
// arrive (at most every stall/4), so a long upload lives as long as it
// moves.
type stallReader struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
	last  time.Time
}

func (s *stallReader) extend() {
	s.last = time.Now()
	_ = s.rc.SetReadDeadline(s.last.Add(s.stall))
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 && time.Since(s.last) > s.stall/4 {
		s.extend()
	}
	return n, err
}

// handleSign adds a release signature (a JSON release.Signature) to a
// stored manifest: PathReleases/{app}/{version}/signatures.
func (s *Seeder) handleSign(w http.ResponseWriter, r *http.Request) {
	var sig release.Signature
	err := readBody(r, &sig)
	var res PublishResult
	if err == nil {
		res, err = s.AddSignature(r.PathValue("app"), r.PathValue("version"), sig)
	}
	s.answer(w, "sign", res, err)
}

// apiStatus maps an error of a publish or a rollout command to an HTTP
// status: the one place that does.
func apiStatus(err error) int {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, ErrTooLarge), errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout
	case errors.Is(err, release.ErrUnknownKey), errors.Is(err, release.ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrNoRollout), errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrVersionConflict),
		errors.Is(err, rollout.ErrFinal), errors.Is(err, rollout.ErrNotPaused), errors.Is(err, rollout.ErrPaused),
		errors.Is(err, rollout.ErrNoPrevious), errors.Is(err, rollout.ErrSameTarget),
		errors.Is(err, ErrReplay), errors.Is(err, release.ErrTooFewSignatures):
		return http.StatusConflict
	case errors.Is(err, release.ErrInvalid), errors.Is(err, ErrBundleMismatch):
		return http.StatusBadRequest
	case errors.Is(err, syscall.ENOSPC):
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

func (s *Seeder) handleList(w http.ResponseWriter, _ *http.Request) {
	out := []release.Manifest{}
	for _, r := range s.store.list() {
		out = append(out, r.Manifest)
	}
	writeJSON(w, http.StatusOK, out)
}

// writeError answers with one JSON line, {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
