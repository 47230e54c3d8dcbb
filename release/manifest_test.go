package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestValidateApp(t *testing.T) {
	tests := []struct {
		app string
		ok  bool
	}{
		{"web", true},
		{"billing-worker", true},
		{"a", true},
		{"0", true},
		{"a.b_c-d", true},
		{"9lives", true},
		{"x" + strings.Repeat("y", 62), true}, // 63
		{"", false},
		{"Web", false},
		{"wEb", false},
		{"-x", false},
		{".x", false},
		{"_x", false},
		{"a/b", false},
		{"..", false},
		{".", false},
		{"a b", false},
		{" web", false},
		{"web\n", false},
		{"web\x00", false},
		{"a+b", false},
		{`a\b`, false},
		{strings.Repeat("a", 64), false},
		{"wéb", false},
		{"ウェブ", false},
		{"ｗｅｂ", false}, // full-width letters
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			err := ValidateApp(tt.app)
			if tt.ok != (err == nil) {
				t.Errorf("ValidateApp(%q) = %v, want ok=%v", tt.app, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestValidateVersion(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{"1", true},
		{"1.2.3", true},
		{"v1.0.0-rc.1+build.5", true},
		{"2025_03_14", true},
		{"RC1", true},
		{"1" + strings.Repeat(".", 47), true}, // 48
		{"", false},
		{"-1", false},
		{"+1", false},
		{".1", false},
		{"_1", false},
		{"1/2", false},
		{"..", false},
		{"1.0 ", false},
		{"1:2", false},
		{"1.0\x00", false},
		{"1.0\n", false},
		{strings.Repeat("1", 49), false},
		{"ü1", false},
		{"1.0-ß", false},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			err := ValidateVersion(tt.v)
			if tt.ok != (err == nil) {
				t.Errorf("ValidateVersion(%q) = %v, want ok=%v", tt.v, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		ok     bool
	}{
		{"valid", func(*Manifest) {}, true},
		{"zero unpacked size", func(m *Manifest) { m.UnpackedSize = 0 }, true},
		{"largest piece", func(m *Manifest) { m.PieceLength = 16 << 20 }, true},
		{"zero created", func(m *Manifest) { m.Created = time.Time{} }, true},
		{"bad app", func(m *Manifest) { m.App = "Web" }, false},
		{"no app", func(m *Manifest) { m.App = "" }, false},
		{"bad version", func(m *Manifest) { m.Version = "../1" }, false},
		{"no release id", func(m *Manifest) { m.ReleaseID = "" }, false},
		{"upper-case release id", func(m *Manifest) { m.ReleaseID = ID(strings.ToUpper(string(m.ReleaseID))) }, false},
		{"release id without prefix", func(m *Manifest) { m.ReleaseID = ID(m.ReleaseID.Hex()) }, false},
		{"zero bundle size", func(m *Manifest) { m.BundleSize = 0 }, false},
		{"negative bundle size", func(m *Manifest) { m.BundleSize = -1 }, false},
		{"negative unpacked size", func(m *Manifest) { m.UnpackedSize = -1 }, false},
		{"no infohash", func(m *Manifest) { m.InfoHash = "" }, false},
		{"short infohash", func(m *Manifest) { m.InfoHash = m.InfoHash[:39] }, false},
		{"long infohash", func(m *Manifest) { m.InfoHash += "00" }, false},
		{"non-hex infohash", func(m *Manifest) { m.InfoHash = strings.Repeat("g", 40) }, false},
		{"sha256 infohash", func(m *Manifest) { m.InfoHash = m.ReleaseID.Hex() }, false},
		{"zero piece length", func(m *Manifest) { m.PieceLength = 0 }, false},
		{"negative piece length", func(m *Manifest) { m.PieceLength = -(256 << 10) }, false},
		{"piece length not a power of two", func(m *Manifest) { m.PieceLength = 3 << 18 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest("web", "1.2.3")
			tt.mutate(&m)
			err := m.Validate()
			if tt.ok != (err == nil) {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestManifestDir(t *testing.T) {
	m := testManifest("web", "1.2.3")
	if got, want := m.Dir(), "1.2.3-"+m.ReleaseID.Hex()[:12]; got != want {
		t.Errorf("Dir = %q, want %q", got, want)
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in   string
		want string // the plan as String prints it; "" = refused
	}{
		{"", "100%"},
		{"100%", "100%"},
		{"1,10%,50%,100%", "1,10%,50%,100%"},
		{"1, 10%, 50%", "1,10%,50%,100%"},
		{"1,5,20", "1,5,20,100%"},
		{"2.5%,100%", "2.5%,100%"},
		{"0%,100%", ""},
		{"0,100%", ""},
		{"-1,100%", ""},
		{"10%,150%", ""},
		{"50%,10%", ""},
		{"5,5,100%", ""},
		{"5,2", ""},
		{"50%,50%", ""},
		{"ten", ""},
		{"NaN%", ""},
		{"1,,2", ""},
		{"100%,5", ""},
		{"50%,100%,100%", ""},
	}
	for _, tt := range tests {
		steps, err := ParseSteps(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseSteps(%q) = %v, %v; want ErrInvalid", tt.in, steps, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSteps(%q): %v", tt.in, err)
			continue
		}
		if got := (Plan{Steps: steps}).String(); got != tt.want {
			t.Errorf("ParseSteps(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestStepNodes(t *testing.T) {
	tests := []struct {
		step  Step
		fleet int
		want  int
	}{
		{Step{Count: 1}, 20, 1},
		{Step{Count: 30}, 20, 20},
		{Step{Percent: 10}, 20, 2},
		{Step{Percent: 1}, 20, 1},
		{Step{Percent: 50}, 5, 3},
		{Step{Percent: 100}, 5000, 5000},
		{Step{Percent: 10}, 5000, 500},
		{Step{Percent: 10}, 0, 0},
	}
	for _, tt := range tests {
		if got := tt.step.Nodes(tt.fleet); got != tt.want {
			t.Errorf("%s of %d = %d, want %d", tt.step, tt.fleet, got, tt.want)
		}
	}
}

func TestParseBudget(t *testing.T) {
	tests := []struct {
		in    string
		fleet int
		want  int // -1 = refused
	}{
		{"0", 20, 0}, {"2", 20, 2}, {"10%", 20, 2}, {"0.1", 20, 2}, {"25%", 10, 2},
		{"100%", 7, 7}, {"150%", 7, -1}, {"-1", 7, -1}, {"x", 7, -1}, {"1.5", 7, -1},
	}
	for _, tt := range tests {
		b, err := ParseBudget(tt.in)
		if tt.want < 0 {
			if err == nil {
				t.Errorf("ParseBudget(%q) = %+v, want an error", tt.in, b)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBudget(%q): %v", tt.in, err)
			continue
		}
		if got := b.Of(tt.fleet); got != tt.want {
			t.Errorf("ParseBudget(%q).Of(%d) = %d, want %d", tt.in, tt.fleet, got, tt.want)
		}
	}
}

func TestBudgetString(t *testing.T) {
	for in, want := range map[string]string{
		"2": "2", "0": "0", "9007199254740993": "9007199254740993",
		"10%": "10%", "0.1": "10%", ".007": "0.007", "0.07": "7%", "100%": "100%", "12.5%": "12.5%",
	} {
		b, err := ParseBudget(in)
		if err != nil {
			t.Fatalf("ParseBudget(%q): %v", in, err)
		}
		if got := b.String(); got != want {
			t.Errorf("ParseBudget(%q).String() = %q, want %q", in, got, want)
		}
		if again, err := ParseBudget(b.String()); err != nil || again != b {
			t.Errorf("ParseBudget(%q) = %+v, printed and parsed again %+v, %v", in, b, again, err)
		}
	}
}

func TestPlanValidate(t *testing.T) {
	tests := []struct {
		name string
		plan Plan
		ok   bool
	}{
		{"zero", Plan{}, true},
		{"waves", Plan{Steps: []Step{{Count: 1}, {Percent: 100}}, Bake: time.Second}, true},
		{"blue-green", Plan{Strategy: StrategyBlueGreen, MinStaged: Budget{Ratio: 0.9}}, true},
		{"blue-green with steps", Plan{Strategy: StrategyBlueGreen, Steps: []Step{{Count: 1}, {Percent: 100}}}, false},
		{"unknown strategy", Plan{Strategy: "yolo"}, false},
		{"negative bake", Plan{Bake: -time.Second}, false},
		{"step with both", Plan{Steps: []Step{{Count: 1, Percent: 5}}}, false},
		{"budget with both", Plan{MaxFailures: Budget{Count: 1, Ratio: 0.5}}, false},
	}
	for _, tt := range tests {
		err := tt.plan.Validate()
		if tt.ok != (err == nil) {
			t.Errorf("%s: Validate = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestDesiredStateValidate(t *testing.T) {
	k := testKey(1)
	tests := []struct {
		name   string
		mutate func(d *DesiredState)
		ok     bool
	}{
		{"valid", func(*DesiredState) {}, true},
		{"first step", func(d *DesiredState) { d.Step = 0 }, true},
		{"last step", func(d *DesiredState) { d.Step = 3 }, true},
		{"zero plan", func(d *DesiredState) { d.Plan, d.Step = Plan{}, 0 }, true},
		{"no previous", func(d *DesiredState) { d.Previous = nil }, true},
		{"paused", func(d *DesiredState) { d.Paused = true }, true},
		{"bad app", func(d *DesiredState) { d.App = "Web" }, false},
		{"sequence zero", func(d *DesiredState) { d.Sequence = 0 }, false},
		{"bad plan", func(d *DesiredState) { d.Plan = Plan{Steps: []Step{{Percent: 50}, {Percent: 20}}} }, false},
		{"admit above one", func(d *DesiredState) { d.Admit = 1.5 }, false},
		{"bad env", func(d *DesiredState) { d.Env = "Prod!" }, false},
		{"env", func(d *DesiredState) { d.Env = "staging" }, true},
		{"transient state", func(d *DesiredState) { d.State = RolloutBaking }, false},
		{"published later", func(d *DesiredState) { d.Published = d.Sequence + 1 }, false},
		{"negative step", func(d *DesiredState) { d.Step = -1 }, false},
		{"step past plan", func(d *DesiredState) { d.Step = 4 }, false},
		{"negative step, zero plan", func(d *DesiredState) { d.Plan, d.Step = Plan{}, -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDesired(t, k)
			tt.mutate(&d)
			err := d.Validate()
			if tt.ok != (err == nil) {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}

	d := testDesired(t, k)
	expiry := []struct {
		expires, now time.Time
		want         bool
	}{
		{time.Time{}, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{d.Expires, d.Expires.Add(-time.Second), false},
		{d.Expires, d.Expires, false},
		{d.Expires, d.Expires.Add(time.Nanosecond), true},
	}
	for _, tt := range expiry {
		d.Expires = tt.expires
		if got := d.Expired(tt.now); got != tt.want {
			t.Errorf("Expires %v, Expired(%v) = %v, want %v", tt.expires, tt.now, got, tt.want)
		}
	}
}

func TestParseID(t *testing.T) {
	good := IDOf([]byte("bundle"))
	tests := []struct {
		in string
		ok bool
	}{
		{string(good), true},
		{IDPrefix + strings.Repeat("0", 64), true},
		{"", false},
		{IDPrefix, false},
		{good.Hex(), false},
		{"sha512:" + good.Hex(), false},
		{"SHA256:" + good.Hex(), false},
		{IDPrefix + strings.ToUpper(good.Hex()), false},
		{string(good)[:len(good)-1], false},
		{string(good) + "0", false},
		{IDPrefix + strings.Repeat("g", 64), false},
		{IDPrefix + " " + good.Hex()[1:], false},
		{" " + string(good), false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := ParseID(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseID(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadID) {
				t.Errorf("error %v is not ErrBadID", err)
			}
			if err == nil && string(id) != tt.in {
				t.Errorf("ParseID(%q) = %q", tt.in, id)
			}
		})
	}

	h := sha256.New()
	h.Write([]byte("bundle"))
	if got := IDFromHash(h); got != good {
		t.Errorf("IDFromHash = %s, IDOf = %s", got, good)
	}
	if good.Short() != good.Hex()[:12] || good.String() != string(good) || IDPrefix+good.Hex() != string(good) {
		t.Errorf("Hex %q Short %q String %q disagree", good.Hex(), good.Short(), good.String())
	}
	if ID("sha256:abc").Short() != "abc" {
		t.Errorf("Short of a short id = %q", ID("sha256:abc").Short())
	}
}

func TestPieceLengthFor(t *testing.T) {
	const (
		KiB = 1 << 10
		MiB = 1 << 20
		GiB = 1 << 30
	)
	tests := []struct {
		size int64
		want int64
	}{
		{-1, 256 * KiB},
		{0, 256 * KiB},
		{1, 256 * KiB},
		{100 * MiB, 256 * KiB},
		{512 * MiB, 256 * KiB}, // exactly 2048 pieces of 256 KiB
		{512*MiB + 1, 512 * KiB},
		{1 * GiB, 512 * KiB},
		{1*GiB + 1, 1 * MiB},
		{2 * GiB, 1 * MiB},
		{3 * GiB, 2 * MiB},
		{10 * GiB, 8 * MiB},
		{32 * GiB, 16 * MiB},
		{32*GiB + 1, 16 * MiB}, // the cap: more than 2048 pieces from here on
		{1 << 40, 16 * MiB},
		{math.MaxInt64, 16 * MiB},
	}
	for _, tt := range tests {
		if got := PieceLengthFor(tt.size); got != tt.want {
			t.Errorf("PieceLengthFor(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}

	// The documented rule, checked on random sizes: the smallest power of
	// two in [256 KiB, 16 MiB] that keeps the bundle to 2048 pieces.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		size := rng.Int64N(64 * GiB)
		l := PieceLengthFor(size)
		if l < 256*KiB || l > 16*MiB || l&(l-1) != 0 {
			t.Fatalf("PieceLengthFor(%d) = %d: not a power of two in range", size, l)
		}
		pieces := (size + l - 1) / l
		if l < 16*MiB && pieces > 2048 {
			t.Fatalf("PieceLengthFor(%d) = %d: %d pieces", size, l, pieces)
		}
		if half := l / 2; l > 256*KiB && (size+half-1)/half <= 2048 {
			t.Fatalf("PieceLengthFor(%d) = %d: %d would do", size, l, half)
		}
	}
}

// goldenManifest is the fixed manifest behind testdata/manifest.golden.json.
func goldenManifest() Manifest {
	return Manifest{
		App:          "billing-worker",
		Version:      "2.7.1+build.42",
		ReleaseID:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		BundleSize:   734003200,
		UnpackedSize: 2147483648,
		InfoHash:     "d41d8cd98f00b204e9800998ecf8427e00112233",
		PieceLength:  PieceLengthFor(734003200),
		Created:      time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.UTC),
	}
}

// TestGolden pins the encodings every node depends on: a change in the
// manifest's canonical JSON or in what is signed breaks every signature
// already issued. Run with -update only for a deliberate format change.
func TestGolden(t *testing.T) {
	m := goldenManifest()
	signed := mustSignManifest(t, m, testKey(42))
	tests := []struct {
		file string
		v    any
	}{
		{"manifest.golden.json", m},
		{"manifest.signed.golden.json", signed},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := mustJSON(t, tt.v)
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding changed:\n got %s\nwant %s\n(run go test -update if this is deliberate)", got, want)
			}
		})
	}

	// The golden bytes are what a node receives: they must verify as they are.
	b, err := os.ReadFile(filepath.Join("testdata", "manifest.signed.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s SignedManifest
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(NewKeyring(testKey(42).Public()))
	if err != nil || got != m {
		t.Errorf("golden signed manifest: Verify = %+v, %v", got, err)
	}
}
