package seeder

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"

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
const (
	PathHealth   = "/healthz"
	PathReleases = "/v1/releases"
	PathStatus   = "/v1/status"
	PathRollouts = "/v1/rollouts"
)

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

func (s *Seeder) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
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
	return mux
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
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w request body: %w", release.ErrInvalid, err)
	}
	return nil
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
	raw, err := base64.StdEncoding.DecodeString(r.Header.Get(ManifestHeader))
	if err != nil || len(raw) == 0 {
		writeJSON(w, http.StatusBadRequest, apiError{"missing or malformed " + ManifestHeader + " header"})
		return
	}
	var sm release.SignedManifest
	if err := json.Unmarshal(raw, &sm); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"malformed manifest: " + err.Error()})
		return
	}
	var opts PublishOptions
	if h := r.Header.Get(RolloutHeader); h != "" {
		raw, err := base64.StdEncoding.DecodeString(h)
		if err == nil {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			err = dec.Decode(&opts)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"malformed " + RolloutHeader + " header: " + err.Error()})
			return
		}
	}
	res, err := s.Publish(r.Context(), sm, r.Body, opts)
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
	code := http.StatusCreated
	switch {
	case res.Existed:
		code = http.StatusOK
	case res.Pending:
		code = http.StatusAccepted
	}
	writeJSON(w, code, res)
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
	switch {
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
