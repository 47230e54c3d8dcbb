package seeder

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/internal/fuzzcorpus"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// fuzzSigner is what the request fuzz targets sign with: a deterministic
// rollout key (key), a release key that signed the manifest sm, and the
// trust that pins both.
type fuzzSigner struct {
	key   *release.PrivateKey
	trust release.Trust
	sm    release.SignedManifest
}

func newFuzzSigner(t testing.TB) fuzzSigner {
	t.Helper()
	key, err := release.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	m := release.Manifest{App: "web", Version: "1.0.0", ReleaseID: release.IDOf([]byte("web")), BundleSize: 1,
		InfoHash: "0123456789abcdef0123456789abcdef01234567", PieceLength: 1 << 18,
		Created: time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)}
	rel, err := release.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{2}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	sm, err := release.SignManifest(m, rel)
	if err != nil {
		t.Fatal(err)
	}
	trust := release.Trust{Release: release.NewKeyring(rel.Public()), Rollout: release.NewKeyring(key.Public())}
	return fuzzSigner{key: key, trust: trust, sm: sm}
}

// runAccepted checks what the seeder does with a rollout it accepted for
// env under plan with fleet agents: the first desired state signs and
// verifies with the plan intact and, with a fleet in which every admitted
// node turns active and healthy, the controller takes the rollout to
// complete through states that all sign and verify.
func (s fuzzSigner) runAccepted(t *testing.T, env string, plan release.Plan, fleet int) {
	t.Helper()
	names := make([]string, fleet)
	for i := range names {
		names[i] = fmt.Sprintf("node-%d", i)
	}
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	var seq uint64
	sign := func(d release.DesiredState, what string) release.DesiredState {
		t.Helper()
		seq++
		d.Sequence, d.Issued = seq, now
		if d.Published == 0 {
			d.Published = seq
		}
		sd, err := release.SignDesired(d, s.key)
		if err != nil {
			t.Fatalf("%s: the seeder cannot sign the state for an accepted plan %+v: %v", what, plan, err)
		}
		got, err := s.trust.VerifyDesired(sd)
		if err != nil {
			t.Fatalf("%s: nodes refuse the state for an accepted plan %+v: %v", what, plan, err)
		}
		return got
	}
	d, err := rollout.Start(env, plan, s.sm, nil, nil, names, true)
	if err != nil {
		t.Fatalf("an accepted plan %+v cannot start: %v", plan, err)
	}
	d = sign(d, "start")
	if want, got := mustMarshal(t, plan), mustMarshal(t, d.Plan); !bytes.Equal(got, want) {
		t.Fatalf("signed plan %s, asked for %s", got, want)
	}
	if fleet == 0 || plan.Bake > time.Hour || plan.NumSteps() > 32 {
		return // nothing to admit, or too long to play out here
	}
	id := release.IDOf([]byte("web"))
	mem := &rollout.Memory{}
	for i := 0; i < 3*plan.NumSteps()+6 && d.State != release.RolloutComplete; i++ {
		nodes := make([]rollout.Node, fleet)
		for j, name := range names {
			nodes[j] = rollout.Node{Name: name, ReleaseID: id, Phase: rollout.PhaseStaged}
			if rollout.Admitted(name, &d, id) {
				nodes[j].Phase, nodes[j].Healthy = rollout.PhaseActive, true
			}
		}
		now = now.Add(plan.Bake + time.Second)
		if next := rollout.Decide(now, d, nodes, true, mem).Next; next != nil {
			d = sign(*next, fmt.Sprintf("decision %d", i+1))
		}
	}
	if d.State != release.RolloutComplete {
		t.Fatalf("a healthy fleet of %d under plan %+v did not complete: %s (%s)", fleet, plan, d.State, d.Reason)
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusedAsBadRequest fails unless err maps to 400: what a client sent
// wrong is never the seeder's failure.
func refusedAsBadRequest(t *testing.T, what string, err error) {
	t.Helper()
	if code := apiStatus(err); code != http.StatusBadRequest {
		t.Fatalf("%s refused with status %d: %v", what, code, err)
	}
}

func publishRequestSeeds() []fuzzcorpus.Seed {
	return []fuzzcorpus.Seed{
		{Name: "canary", Args: []any{[]byte(`{"env":"prod","plan":{"steps":[{"n":1},{"pct":50},{"pct":100}],"bake":3000000000}}`), byte(6)}},
		{Name: "default-plan", Args: []any{[]byte(`{}`), byte(3)}},
		{Name: "all-at-once", Args: []any{[]byte(`{"plan":{"strategy":"all-at-once","max_failures":{"ratio":0.1}}}`), byte(4)}},
		{Name: "blue-green", Args: []any{[]byte(`{"env":"staging","plan":{"strategy":"blue-green","min_staged":{"n":2},"deadline":60000000000}}`), byte(3)}},
		{Name: "count-over-fleet", Args: []any{[]byte(`{"plan":{"steps":[{"n":5}]}}`), byte(2)}},
		{Name: "steps-not-ending-at-all", Args: []any{[]byte(`{"plan":{"steps":[{"n":1},{"pct":10}]}}`), byte(10)}},
		{Name: "no-nodes", Args: []any{[]byte(`{"plan":{"steps":[{"pct":1}]}}`), byte(0)}},
		{Name: "unknown-field", Args: []any{[]byte(`{"plan":{"stepz":[]}}`), byte(1)}},
		{Name: "trailing-data", Args: []any{[]byte(`{"env":"prod"}{"env":"dev"}`), byte(1)}},
		{Name: "bad-env", Args: []any{[]byte(`{"env":"../prod"}`), byte(1)}},
		{Name: "negative-bake", Args: []any{[]byte(`{"plan":{"bake":-1}}`), byte(1)}},
		{Name: "not-json", Args: []any{[]byte(`%%%`), byte(1)}},
	}
}

// FuzzPublishRequest decodes an arbitrary Swarm-Rollout header (the fuzz
// input is its JSON; the target base64-encodes it, and also tries it
// unencoded and as the manifest header) beside a valid manifest, then
// checks the options against a fleet of 0-11 agents, as a publish does.
// What is refused is a 400. What is accepted is one JSON value, survives a
// client's re-encoding, and is a rollout the seeder can sign, nodes verify
// and, on a healthy fleet, the controller completes.
func FuzzPublishRequest(f *testing.F) {
	s := newFuzzSigner(f)
	manifestHeader := base64.StdEncoding.EncodeToString(mustMarshal(f, s.sm))
	f.Fuzz(func(t *testing.T, data []byte, fleetByte byte) {
		for _, h := range []string{string(data), base64.StdEncoding.EncodeToString(data)} {
			if _, _, err := decodePublish(h, ""); err != nil {
				refusedAsBadRequest(t, "manifest header", err)
			}
		}
		if _, _, err := decodePublish(manifestHeader, string(data)); err != nil {
			refusedAsBadRequest(t, "unencoded rollout header", err)
		}
		sm, opts, err := decodePublish(manifestHeader, base64.StdEncoding.EncodeToString(data))
		if err != nil {
			refusedAsBadRequest(t, "rollout header", err)
			return
		}
		if len(data) > 0 && !json.Valid(data) {
			t.Fatalf("accepted a rollout header that is not one JSON value: %q", data)
		}
		if m, err := s.trust.VerifyManifest(sm); err != nil || m.App != "web" {
			t.Fatalf("the manifest header no longer verifies: %v", err)
		}
		_, again, err := decodePublish(manifestHeader, base64.StdEncoding.EncodeToString(mustMarshal(t, opts)))
		if err != nil || !bytes.Equal(mustMarshal(t, again), mustMarshal(t, opts)) {
			t.Fatalf("options %+v re-encoded decode as %+v, %v", opts, again, err)
		}
		plan := release.Plan{} // Config.DefaultPlan's zero value
		if opts.Plan != nil {
			plan = *opts.Plan
		}
		env, fleet := envName(opts.Env), int(fleetByte%12)
		if err := checkRollout(env, plan, fleet); err != nil {
			refusedAsBadRequest(t, "rollout options", err)
			return
		}
		s.runAccepted(t, env, plan, fleet)
	})
}

func rolloutCommandSeeds() []fuzzcorpus.Seed {
	return []fuzzcorpus.Seed{
		{Name: "rollback-to", Args: []any{[]byte(`{"to":"1.0.0"}`), byte(3)}},
		{Name: "empty", Args: []any{[]byte(``), byte(3)}},
		{Name: "whitespace", Args: []any{[]byte(" \n\t"), byte(3)}},
		{Name: "promote", Args: []any{[]byte(`{"from":"staging","to":"prod","plan":{"steps":[{"n":1},{"pct":100}],"bake":1000000000}}`), byte(5)}},
		{Name: "promote-default-plan", Args: []any{[]byte(`{"from":"","to":"prod"}`), byte(1)}},
		{Name: "promote-blue-green", Args: []any{[]byte(`{"to":"prod","plan":{"strategy":"blue-green","min_staged":{"ratio":0.5}}}`), byte(4)}},
		{Name: "unknown-field", Args: []any{[]byte(`{"version":"1.0.0"}`), byte(1)}},
		{Name: "trailing-data", Args: []any{[]byte(`{"to":"1.0.0"} {"to":"2.0.0"}`), byte(1)}},
		{Name: "array", Args: []any{[]byte(`[]`), byte(1)}},
		{Name: "null", Args: []any{[]byte(`null`), byte(1)}},
	}
}

// FuzzRolloutCommand decodes an arbitrary rollout command body as a
// rollback and as a promote-release request. What is refused is a 400.
// What is accepted is empty or one JSON value and survives a client's
// re-encoding; a promotion's plan that passes the checks PromoteRelease
// makes is a rollout the seeder can sign, nodes verify and, on a healthy
// fleet, the controller completes.
func FuzzRolloutCommand(f *testing.F) {
	s := newFuzzSigner(f)
	f.Fuzz(func(t *testing.T, body []byte, fleetByte byte) {
		var rb RollbackRequest
		if err := decodeCommand(body, &rb); err != nil {
			refusedAsBadRequest(t, "rollback body", err)
		} else {
			checkOneValue(t, body)
			var again RollbackRequest
			if err := decodeCommand(mustMarshal(t, rb), &again); err != nil || again != rb {
				t.Fatalf("rollback %+v re-encoded decodes as %+v, %v", rb, again, err)
			}
		}
		var req PromoteRequest
		if err := decodeCommand(body, &req); err != nil {
			refusedAsBadRequest(t, "promote body", err)
			return
		}
		checkOneValue(t, body)
		var again PromoteRequest
		if err := decodeCommand(mustMarshal(t, req), &again); err != nil || !bytes.Equal(mustMarshal(t, again), mustMarshal(t, req)) {
			t.Fatalf("promotion %+v re-encoded decodes as %+v, %v", req, again, err)
		}
		if req.Plan == nil || release.ValidateEnv(envName(req.From)) != nil || envName(req.From) == envName(req.To) {
			return
		}
		env, fleet := envName(req.To), int(fleetByte%12)
		if err := checkRollout(env, *req.Plan, fleet); err != nil {
			refusedAsBadRequest(t, "promotion", err)
			return
		}
		s.runAccepted(t, env, *req.Plan, fleet)
	})
}

func checkOneValue(t *testing.T, body []byte) {
	t.Helper()
	if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
		t.Fatalf("accepted a body that is not one JSON value: %q", body)
	}
}

func TestFuzzCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzPublishRequest", publishRequestSeeds())
	fuzzcorpus.Check(t, "FuzzRolloutCommand", rolloutCommandSeeds())
}
