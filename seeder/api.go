package seeder

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"syscall"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// ManifestHeader carries the signed manifest (base64 of its JSON) on a
// publish request; the body is the bundle itself, streamed.
const ManifestHeader = "Swarm-Manifest"

// API paths.
const (
	PathHealth   = "/healthz"
	PathReleases = "/v1/releases"
	PathStatus   = "/v1/status"
)

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
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	return mux
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
	res, err := s.Publish(r.Context(), sm, r.Body)
	if err != nil {
		code := publishStatus(err)
		if code >= 500 {
			s.log.Error("publish failed", zap.Error(err))
		} else {
			s.log.Warn("publish refused", zap.Error(err))
		}
		writeJSON(w, code, apiError{err.Error()})
		return
	}
	code := http.StatusCreated
	if res.Existed {
		code = http.StatusOK
	}
	writeJSON(w, code, res)
}

// publishStatus maps a publish error to an HTTP status.
func publishStatus(err error) int {
	switch {
	case errors.Is(err, release.ErrUnknownKey), errors.Is(err, release.ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrVersionConflict):
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
