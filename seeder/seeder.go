package seeder

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/swarm"
)

// MinDesiredTTL is the shortest Config.DesiredTTL: a state is re-signed
// at half of it, and each re-signing is a new sequence gossiped to every
// node. (Tests use seconds; an operator wants hours: the default is 24h.)
const MinDesiredTTL = 2 * time.Second

// defaultJoinTimeout is Config.JoinTimeout's default.
const defaultJoinTimeout = 60 * time.Second

// Config configures a Seeder. Zero values take the documented defaults.
type Config struct {
	// StoreDir holds the release store; required.
	StoreDir string
	// Key is the rollout key: it signs desired states; required. It is no
	// release key: manifests must be signed by keys of Trust.Release.
	Key *release.PrivateKey
	// Trust pins the release keys whose manifests the seeder accepts
	// (Release, required) and how many of them must sign a release before
	// its rollout starts (ReleaseThreshold; 0 = 1). Rollout lists other
	// seeders' rollout keys, whose desired states it accepts over gossip;
	// Key's public half is always added.
	Trust release.Trust
	// Name is the seeder's gossip node name. Default "seeder-<hostname>".
	Name string
	// GossipAddr, TorrentAddr and APIAddr are listen addresses ("host:port";
	// port 0 lets the OS pick). Defaults: 0.0.0.0:7946, 0.0.0.0:6881,
	// 127.0.0.1:7700.
	GossipAddr  string
	TorrentAddr string
	APIAddr     string
	// Join lists gossip addresses of other members (other seeders), optional.
	Join []string
	// JoinTimeout bounds the join of Join at start. Default 60s.
	JoinTimeout time.Duration
	// UploadRate caps the origin's upload in bytes/s; 0 means no cap.
	UploadRate int64
	// MaxConns caps the origin's BitTorrent connections per release (its
	// upload slots); 0 = the swarm package's default.
	MaxConns int
	// GossipKeyFile is the gossip key file (gossip.LoadKeyFile): gossip is
	// encrypted and authenticated with its keys, and the file is read again
	// every GossipKeyInterval and on ReloadGossipKeys. Empty:
	// Gossip.SecretKeys as given (none: gossip in the clear).
	GossipKeyFile string
	// GossipKeyInterval is how often the key file is read again; default
	// gossip.KeyFileInterval.
	GossipKeyInterval time.Duration
	// Gossip adjusts gossip timing (tests and benchmarks cut it to
	// milliseconds); its identity and address fields are ignored.
	Gossip gossip.Config
	// DesiredTTL is how long an issued desired state stays valid: the
	// controller re-signs each state this seeder signs once less than half
	// of it is left, and agents holding an expired state report the app
	// stale and take no new target. 0 = states never expire; otherwise at
	// least MinDesiredTTL.
	DesiredTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ControlInterval is how often the rollout controller looks at every
	// rollout; default 500ms.
	ControlInterval time.Duration
	// Settle is how long an environment's membership must stay unchanged
	// before the controller counts it as settled and admits a step of an
	// exact node count; default 2s.
	Settle time.Duration
	// RefusalGrace is how long every node a rollout step waits on may
	// refuse its desired state (a key they do not trust) before the
	// rollout stalls with why; default rollout.DefaultRefusalGrace (30s).
	RefusalGrace time.Duration
	// DefaultPlan is the rollout plan of a publish or promotion that names
	// none. The zero Plan moves every node at once, as soon as it can.
	DefaultPlan release.Plan

	// APIToken is the bearer token every API request but /healthz must
	// carry ("Authorization: Bearer <token>", ValidateToken); "" is none.
	APIToken string
	// APICert, when set, serves the API over HTTPS with this certificate;
	// nil serves plain HTTP.
	APICert *tls.Certificate
	// APIClientCAs, when set (it needs APICert), lets a client certificate
	// these CAs issued for client authentication stand in for the token.
	APIClientCAs *x509.CertPool
	// InsecureAPI lets the API run with no way to authenticate (neither
	// APIToken nor APIClientCAs: anyone who reaches it may publish), or
	// without TLS on an address that is not loopback. Validate refuses
	// both otherwise.
	InsecureAPI bool
	// MaxBundleSize bounds a published bundle in bytes: a larger one is
	// refused with 413 before it is read. Default DefaultMaxBundleSize.
	MaxBundleSize int64
}

// DefaultMaxBundleSize is Config.MaxBundleSize's default: 64 GiB.
const DefaultMaxBundleSize int64 = 64 << 30

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.StoreDir == "" {
		return errors.New("seeder: store dir is required (--store)")
	}
	if c.Key == nil {
		return errors.New("seeder: signing key is required (--key)")
	}
	if c.DesiredTTL < 0 || (c.DesiredTTL > 0 && c.DesiredTTL < MinDesiredTTL) {
		return fmt.Errorf("seeder: --desired-ttl %v: use at least %v (the seeder re-signs at half of it), or 0 for states that never expire", c.DesiredTTL, MinDesiredTTL)
	}
	if len(c.Trust.Release) == 0 {
		return errors.New("seeder: no release key pinned: give the public key of each key that signs releases with --trust-release")
	}
	if err := c.trust().Validate(); err != nil {
		return fmt.Errorf("seeder: %w", err)
	}
	if c.Name == "" {
		h, _ := os.Hostname()
		c.Name = "seeder-" + h
	}
	if c.GossipAddr == "" {
		c.GossipAddr = "0.0.0.0:7946"
	}
	if c.TorrentAddr == "" {
		c.TorrentAddr = "0.0.0.0:6881"
	}
	if c.APIAddr == "" {
		c.APIAddr = "127.0.0.1:7700"
	}
	for _, f := range []struct{ flag, addr string }{{"--gossip", c.GossipAddr}, {"--torrent", c.TorrentAddr}, {"--api", c.APIAddr}} {
		if err := CheckHostPort(f.addr); err != nil {
			return fmt.Errorf("seeder: %s: %w", f.flag, err)
		}
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("seeder: max conns %d is negative", c.MaxConns)
	}
	if c.UploadRate < 0 {
		return fmt.Errorf("seeder: upload rate %d is negative", c.UploadRate)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ControlInterval < 0 || c.Settle < 0 || c.RefusalGrace < 0 {
		return fmt.Errorf("seeder: control interval %s, settle %s and refusal grace %s must not be negative", c.ControlInterval, c.Settle, c.RefusalGrace)
	}
	if c.ControlInterval == 0 {
		c.ControlInterval = 500 * time.Millisecond
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if err := c.DefaultPlan.Validate(); err != nil {
		return fmt.Errorf("seeder: default plan: %w", err)
	}
	if c.MaxBundleSize < 0 {
		return fmt.Errorf("seeder: --max-bundle-size %d is negative", c.MaxBundleSize)
	}
	if c.MaxBundleSize == 0 {
		c.MaxBundleSize = DefaultMaxBundleSize
	}
	return c.validateAPISecurity()
}

// validateAPISecurity refuses an API anyone could use, or one that takes
// tokens in clear from other machines, unless InsecureAPI says so.
func (c *Config) validateAPISecurity() error {
	if c.APIToken != "" {
		if err := ValidateToken(c.APIToken); err != nil {
			return fmt.Errorf("seeder: --api-token-file: %w", err)
		}
	}
	if c.APIClientCAs != nil && c.APICert == nil {
		return errors.New("seeder: --tls-client-ca needs --tls-cert and --tls-key: client certificates travel only over TLS")
	}
	if c.InsecureAPI {
		return nil
	}
	if c.APIToken == "" && c.APIClientCAs == nil {
		return errNoAuth
	}
	host, _, _ := net.SplitHostPort(c.APIAddr)
	if c.APICert == nil && !isLoopbackHost(host) {
		return fmt.Errorf("seeder: --api %s is not a loopback address and the API has no TLS: give --tls-cert and --tls-key, listen on 127.0.0.1, or --insecure-api to accept tokens in clear", c.APIAddr)
	}
	return nil
}

// trust is Trust with the seeder's own rollout key added.
func (c *Config) trust() release.Trust {
	t := release.Trust{Release: c.Trust.Release, Rollout: release.Keyring{}, ReleaseThreshold: c.Trust.ReleaseThreshold}
	for id, k := range c.Trust.Rollout {
		t.Rollout[id] = k
	}
	if c.Key != nil {
		t.Rollout[c.Key.ID()] = c.Key.Public()
	}
	return t
}

// CheckHostPort checks "host:port" with a numeric port in 0..65535.
func CheckHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", a, err)
	}
	_ = host
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p < 0 || p > 65535 || fmt.Sprint(p) != port {
		return fmt.Errorf("address %q: port %q is not a number from 0 to 65535", a, port)
	}
	return nil
}

// Seeder is the origin daemon.
type Seeder struct {
	cfg   Config
	log   *zap.Logger
	trust release.Trust
	store *store

	gossip  *gossip.Node
	keys    *gossip.KeyFile // nil without Config.GossipKeyFile
	torrent *swarm.Client
	api     *http.Server
	apiLn   net.Listener
	limits  apiLimits

	// publishMu makes one desired state issued at a time, by a publish, a
	// command or the controller; it also guards ctl.
	publishMu sync.Mutex
	// signMu makes one change at a time to a stored release's signatures
	// (AddSignature, a publish of a pending release); taken before
	// publishMu.
	signMu sync.Mutex
	ctl    controller

	startOnce sync.Once
	startErr  error
	closeOnce sync.Once
	stop      chan struct{} // closed by Close: the controller stops
	wg        sync.WaitGroup
}

// New builds a seeder; it does no I/O.
func New(cfg Config, log *zap.Logger) (*Seeder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Seeder{
		cfg: cfg, log: log.Named("seeder"), trust: cfg.trust(), store: newStore(cfg.StoreDir),
		ctl: newController(cfg.RefusalGrace), stop: make(chan struct{}), limits: defaultAPILimits(),
	}, nil
}

// Start opens the store, binds gossip, BitTorrent and the API, and starts
// seeding every stored release. On error everything it opened is closed.
func (s *Seeder) Start() error {
	s.startOnce.Do(func() { s.startErr = s.start() })
	return s.startErr
}

func (s *Seeder) start() (err error) {
	defer func() {
		if err != nil {
			s.closeParts()
		}
	}()
	untrusted, err := s.store.open(s.trust.Release)
	if err != nil {
		return err
	}
	for _, u := range untrusted {
		// One line per release, once per start: the store is not edited by
		// hand, and a seeder restarted with the keys it had runs as before.
		s.log.Warn("stored release is signed by no pinned release key (published while the seeder ran with other keys): not served; "+
			"pin its key with --trust-release to serve it again, publish it again signed by a pinned key, or remove its directory",
			zap.String("app", u.Manifest.App), zap.String("version", u.Manifest.Version),
			zap.String("release_id", string(u.Manifest.ReleaseID)), zap.String("dir", u.Dir), zap.Error(u.Err))
	}

	tc := swarm.Config{Dir: s.store.releasesDir(), ListenAddr: s.cfg.TorrentAddr, Origin: true, UploadRate: s.cfg.UploadRate, MaxConnsPerTorrent: s.cfg.MaxConns}
	if s.torrent, err = swarm.New(tc, s.log); err != nil {
		return err
	}
	if err := s.torrent.Start(); err != nil {
		return err
	}

	gc := s.cfg.Gossip
	gc.Name, gc.BindAddr, gc.Trust = s.cfg.Name, s.cfg.GossipAddr, s.trust
	gc.StatePath, gc.Role, gc.TorrentAddr = s.store.desiredPath(), gossip.RoleSeeder, s.torrent.Addr()
	// Restarted without --join, the seeder finds its agents at the
	// addresses it knew.
	gc.PeersPath = filepath.Join(s.cfg.StoreDir, "peers.json")
	// Agents take this node for the origin only if its announcement
	// verifies against their pinned keys.
	gc.SigningKey = s.cfg.Key
	if err := s.loadGossipKeys(&gc); err != nil {
		return err
	}
	if s.gossip, err = gossip.New(gc, s.log); err != nil {
		return err
	}
	s.watchGossipKeys()
	if err := s.gossip.Start(); err != nil {
		return err
	}

	if s.apiLn, err = net.Listen("tcp", s.cfg.APIAddr); err != nil {
		return fmt.Errorf("api listen %s: %w; choose another --api port", s.cfg.APIAddr, err)
	}
	s.apiLn = s.apiListener(s.apiLn)
	s.api = s.apiServer()

	for _, r := range s.store.list() {
		if err := s.torrent.Seed(r.Manifest); err != nil {
			return fmt.Errorf("seed stored release %s %s: %w", r.Manifest.App, r.Manifest.Version, err)
		}
	}
	s.log.Info("seeder started", zap.String("api", s.APIURL()), zap.String("gossip", s.gossip.Addr()),
		zap.String("torrent", s.torrent.Addr()), zap.Int("releases", len(s.store.list())),
		zap.Strings("api_auth", s.apiAuthMethods()))
	if s.cfg.InsecureAPI && s.cfg.APIToken == "" && s.cfg.APIClientCAs == nil {
		s.log.Warn("the API has no authentication (--insecure-api): anyone who reaches it may publish and roll back", zap.String("api", s.APIURL()))
	}
	return nil
}

// Run starts the seeder if needed, joins Config.Join, serves until ctx ends,
// then closes everything and waits for it.
func (s *Seeder) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	if len(s.cfg.Join) > 0 {
		timeout := s.cfg.JoinTimeout
		if timeout <= 0 {
			timeout = defaultJoinTimeout
		}
		jctx, cancel := context.WithTimeout(ctx, timeout)
		err := s.gossip.Join(jctx, s.cfg.Join)
		cancel()
		if err != nil {
			s.Close()
			return err
		}
	}
	errc := make(chan error, 1)
	// The key file's watcher stops with ctx, or before Close when the API
	// fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.keys != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.keys.Run(ctx, s.cfg.GossipKeyInterval)
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.control(ctx)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.api.Serve(s.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("api: %w", err)
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	s.Close()
	return err
}

// Close stops the API and the controller, leaves the cluster and stops
// seeding. Safe twice.
func (s *Seeder) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		if s.api != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.api.Shutdown(sctx)
			cancel()
		} else if s.apiLn != nil {
			s.apiLn.Close()
		}
		s.wg.Wait()
		s.closeParts()
	})
	return nil
}

func (s *Seeder) closeParts() {
	if s.apiLn != nil && s.api == nil {
		s.apiLn.Close()
	}
	if s.gossip != nil {
		s.gossip.Close()
	}
	if s.torrent != nil {
		s.torrent.Close()
	}
}

// APIURL is the API's base URL, with the real port.
func (s *Seeder) APIURL() string {
	if s.apiLn == nil {
		return ""
	}
	if s.cfg.APICert != nil {
		return "https://" + s.apiLn.Addr().String()
	}
	return "http://" + s.apiLn.Addr().String()
}

// GossipAddr is the gossip address agents join, with the real port.
func (s *Seeder) GossipAddr() string { return s.gossip.Addr() }

// TorrentAddr is the origin's BitTorrent address, with the real port.
func (s *Seeder) TorrentAddr() string { return s.torrent.Addr() }

// TorrentStats are the origin's transfer counters; BytesSent is origin egress.
func (s *Seeder) TorrentStats() swarm.Stats { return s.torrent.Stats() }

// PublishResult says what a publish did.
type PublishResult struct {
	App       string     `json:"app"`
	Env       string     `json:"env"`
	Version   string     `json:"version"`
	ReleaseID release.ID `json:"release_id"`
	InfoHash  string     `json:"infohash"`
	Magnet    string     `json:"magnet"`
	// Sequence is the desired state that targets the release; 0 while it
	// is pending.
	Sequence uint64 `json:"seq"`
	// Existed: the store already held the release, so no byte was
	// uploaded; Note says whether anything was issued.
	Existed bool `json:"existed"`
	// Pending: the release has Signatures of the Threshold release
	// signatures it needs; its rollout starts when the last one arrives
	// (swarm sign).
	Pending    bool `json:"pending,omitempty"`
	Signatures int  `json:"signatures"`
	Threshold  int  `json:"threshold"`
	// Note says in a sentence what happened when it was not a plain start.
	Note string `json:"note,omitempty"`
	// Reachable is how many agents of Env are alive members of the
	// seeder's cluster as it answers: with none, the release reaches nodes
	// only when they join. Set by the HTTP API; nil from a seeder that
	// does not say.
	Reachable *int `json:"reachable,omitempty"`
}

// PublishOptions says where and how a published release rolls out.
type PublishOptions struct {
	// Env is the environment; "" is release.DefaultEnv.
	Env string `json:"env,omitempty"`
	// Plan is the rollout plan; nil is Config.DefaultPlan.
	Plan *release.Plan `json:"plan,omitempty"`
}

// ErrReplay reports a publish that would make an environment target a
// release it has been through already: only `swarm rollout rollback --to`
// does that, on purpose.
var ErrReplay = errors.New("release published before")

// Publish verifies a signed manifest, stores the bundle streamed from body,
// seeds it and starts a rollout that makes it the app's target in o.Env.
//
// A publish never moves an environment back. A release counts as older
// than the environment's current target when it was published before: the
// store already holds it (and it is not waiting for signatures), or the
// environment's desired state names it as its previous or a bad release.
// Publishing such a release is refused with ErrReplay, before any byte of
// the body is read; publishing the current target again is a no-op.
// A manifest with fewer release signatures than the threshold is stored
// and seeded but starts no rollout until AddSignature brings the rest.
// A refused plan or a failed publish leaves the store and the desired state
// as they were.
func (s *Seeder) Publish(ctx context.Context, sm release.SignedManifest, body io.Reader, o PublishOptions) (PublishResult, error) {
	m, n, err := s.trust.CountManifest(sm)
	if err != nil && !errors.Is(err, release.ErrTooFewSignatures) {
		return PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	env, plan, err := s.rolloutOptions(o.Env, o.Plan)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s %s: %w", m.App, m.Version, err)
	}
	s.signMu.Lock()
	stored, existed := s.store.get(m.ReleaseID)
	if existed && stored.Pending != nil {
		defer s.signMu.Unlock()
		return s.publishPendingLocked(stored, sm)
	}
	s.signMu.Unlock() // not across the upload: publishes stream in parallel
	replay := func(cur release.DesiredState) error { return s.replayed(cur, m, existed) }
	if cur, _, ok := s.gossip.Desired(release.StateKey(m.App, env)); ok {
		// Checked again under publishMu when issuing; here so that a
		// replay is refused before a byte of its body is read.
		if err := replay(cur); err != nil {
			return PublishResult{}, fmt.Errorf("publish %s %s: %w", m.App, m.Version, err)
		}
	}
	var pending *PublishOptions
	if n < s.trust.Threshold() {
		pending = &PublishOptions{Env: env, Plan: &plan}
	}
	if existed, err = s.store.put(m, sm, body, pending); err != nil {
		return PublishResult{}, fmt.Errorf("publish %s %s: %w", m.App, m.Version, err)
	}
	if err := s.torrent.Seed(m); err != nil {
		return PublishResult{}, fmt.Errorf("publish %s %s: seed: %w", m.App, m.Version, err)
	}
	res := s.result(env, m, n, existed)
	if pending != nil {
		res.Pending = true
		res.Note = fmt.Sprintf("stored with %d of %d release signatures; its rollout starts when the last arrives (swarm sign --app %s --version %s)", n, res.Threshold, m.App, m.Version)
		s.log.Info("published, waiting for release signatures", zap.String("app", m.App), zap.String("env", env),
			zap.String("version", m.Version), zap.Int("signatures", n), zap.Int("threshold", res.Threshold))
		return res, nil
	}
	d, issued, err := s.issue(env, plan, sm, m, replay)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s %s: %w", m.App, m.Version, err)
	}
	res.Sequence = d.Sequence
	if !issued {
		res.Note = fmt.Sprintf("%s %s is already the target in %s (seq %d); nothing issued", m.App, m.Version, env, d.Sequence)
	}
	s.log.Info("published", zap.String("app", m.App), zap.String("env", env), zap.String("version", m.Version),
		zap.String("release_id", string(m.ReleaseID)), zap.Uint64("seq", d.Sequence), zap.Bool("existed", existed), zap.Bool("issued", issued))
	return res, nil
}

func (s *Seeder) result(env string, m release.Manifest, signatures int, existed bool) PublishResult {
	return PublishResult{
		App: m.App, Env: env, Version: m.Version, ReleaseID: m.ReleaseID, InfoHash: m.InfoHash,
		Magnet: swarm.MagnetURI(m, s.torrent.Addr()), Existed: existed,
		Signatures: signatures, Threshold: s.trust.Threshold(),
	}
}

// replayed refuses to make m the target of cur's environment when m was
// published before (see Publish); stored says the store already holds it.
func (s *Seeder) replayed(cur release.DesiredState, m release.Manifest, stored bool) error {
	if tm, err := cur.Target.Unverified(); err == nil && tm.ReleaseID == m.ReleaseID {
		return nil // the current target: a no-op
	}
	old := stored || cur.IsBad(m.ReleaseID)
	if cur.Previous != nil {
		if pm, err := cur.Previous.Unverified(); err == nil && pm.ReleaseID == m.ReleaseID {
			old = true
		}
	}
	if !old {
		return nil
	}
	tm, _ := cur.Target.Unverified()
	return fmt.Errorf("%w: %s %s (%s) was published before and %s targets %s now; a publish never moves an environment back: "+
		"to return to it on purpose, run 'swarm rollout rollback %s --env %s --to %s'",
		ErrReplay, m.App, m.Version, m.ReleaseID.Short(), cur.EnvName(), tm.Version, m.App, cur.EnvName(), m.Version)
}

// rolloutOptions checks an environment and a plan (nil: the default plan)
// against what the seeder knows of the environment's fleet now.
func (s *Seeder) rolloutOptions(env string, plan *release.Plan) (string, release.Plan, error) {
	env = envName(env)
	p := s.cfg.DefaultPlan
	if plan != nil {
		p = *plan
	}
	if err := checkRollout(env, p, len(s.agents(env))); err != nil {
		return "", release.Plan{}, err
	}
	return env, p, nil
}

// issue starts a rollout of sm in env under plan: a signed desired state
// from rollout.Start. If env already targets sm, it issues nothing and
// returns the current state with issued false. replay, when set, may refuse
// the new target given the current state.
func (s *Seeder) issue(env string, plan release.Plan, sm release.SignedManifest, m release.Manifest, replay func(release.DesiredState) error) (d release.DesiredState, issued bool, err error) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	key := release.StateKey(m.App, env)
	var prev *release.SignedManifest
	var bad []release.ID
	if cur, _, ok := s.gossip.Desired(key); ok {
		tm, err := cur.Target.Unverified()
		if err == nil && tm.ReleaseID == m.ReleaseID {
			return cur, false, nil
		}
		if replay != nil {
			if err := replay(cur); err != nil {
				return release.DesiredState{}, false, err
			}
		}
		prev, bad = rollout.PreviousFor(&cur, m.ReleaseID, rolloutNodes(s.agents(env), m.App)), cur.Bad
		prev = s.freshPrevious(m.App, env, prev)
	}
	names, settled := s.ctl.membership(env, s.agents(env), s.cfg.Now(), s.cfg.Settle)
	next, err := rollout.Start(env, plan, sm, prev, bad, names, settled)
	if err != nil {
		return release.DesiredState{}, false, err
	}
	d, err = s.signLocked(next)
	return d, err == nil, err
}

// freshPrevious is prev as the store holds it, with every signature added
// since; nil when even that has fewer release signatures than the threshold
// (after the threshold was raised): every node would refuse a state that
// carried it, so the new state has no release to roll back to.
func (s *Seeder) freshPrevious(app, env string, prev *release.SignedManifest) *release.SignedManifest {
	if prev == nil {
		return nil
	}
	if pm, err := prev.Unverified(); err == nil {
		if r, ok := s.store.get(pm.ReleaseID); ok {
			p := r.Signed
			prev = &p
		}
	}
	if _, err := s.trust.VerifyManifest(*prev); err != nil {
		s.log.Warn("previous release left out of the new desired state: no rollback to it", zap.String("app", app),
			zap.String("env", env), zap.Error(err))
		return nil
	}
	return prev
}

// signLocked numbers d as the next state of its key, signs it and gossips
// it. Published is set to the new sequence when d leaves it 0 (a new
// target). The caller holds publishMu.
func (s *Seeder) signLocked(d release.DesiredState) (release.DesiredState, error) {
	d.Issued = s.cfg.Now().UTC()
	return s.resignLocked(d)
}

// resignLocked numbers, signs and gossips d as signLocked does but keeps
// its Issued time: a refresh before expiry is not a transition, so it must
// not restart the progress deadline (rollout.Decide counts from Issued).
func (s *Seeder) resignLocked(d release.DesiredState) (release.DesiredState, error) {
	d.Sequence = s.gossip.HighestSeq(d.Key()) + 1
	if d.Published == 0 {
		d.Published = d.Sequence
	}
	d.Expires = time.Time{}
	if s.cfg.DesiredTTL > 0 {
		d.Expires = s.cfg.Now().UTC().Add(s.cfg.DesiredTTL)
	}
	if err := release.CheckSequence(s.gossip.HighestSeq(d.Key()), d.Sequence); err != nil {
		return release.DesiredState{}, fmt.Errorf("sign desired state: %w", err) // never: it is the next one
	}
	sd, err := release.SignDesired(d, s.cfg.Key)
	if err != nil {
		return release.DesiredState{}, fmt.Errorf("sign desired state: %w", err)
	}
	if err := s.gossip.Publish(sd); err != nil {
		return release.DesiredState{}, fmt.Errorf("gossip desired state: %w", err)
	}
	if tm, err := d.Target.Unverified(); err == nil {
		gone, err := s.store.supersede(d.App, d.EnvName(), tm.ReleaseID)
		for _, m := range gone {
			s.log.Info("pending release superseded: it will not roll out", zap.String("app", m.App), zap.String("env", d.EnvName()),
				zap.String("version", m.Version), zap.String("target", tm.Version))
		}
		if err != nil {
			s.log.Error("cannot clear a superseded pending release", zap.String("app", d.App), zap.Error(err))
		}
	}
	return d, nil
}
