package agent

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/swarm"
)

// originUse is this node's part in fetching m from the origin: a feeder's
// share, or peers first with the origin as a fallback (Config.OriginFeeders).
// Feeders are the OriginFeeders agents whose names, hashed with the release
// id, rank first; every node ranks the members it knows the same way. A
// feeder whose torrent address' IP this node has banned sends it nothing:
// its slot goes to the next agent in rank (see feederShare), and a fetch
// asks again after a ban (swarm.OriginUse.Reassign).
func (a *Agent) originUse(m release.Manifest, log *zap.Logger) swarm.OriginUse {
	if a.cfg.OriginFeeders <= 0 {
		return swarm.OriginUse{}
	}
	use := swarm.OriginUse{Fallback: a.cfg.OriginFallback, SwarmProgress: func() float64 { return a.view.ReleaseProgress(m.ReleaseID) }}
	banned := a.torrent.BannedIPs()
	r := a.feederRole(m, banned)
	if r.of > 0 {
		log.Info("origin feeder for this release", r.fields(banned)...)
	}
	use.Share, use.Of = r.share, r.of
	// Asked again every few seconds while a peer is banned: log changes.
	var mu sync.Mutex
	last := r
	use.Reassign = func(banned []string) (int, int) {
		r := a.feederRole(m, banned)
		mu.Lock()
		defer mu.Unlock()
		if r.of > 0 && (r.share != last.share || r.of != last.of || r.replaced != last.replaced) {
			log.Info("origin feeder for this release after a ban", r.fields(banned)...)
		}
		last = r
		return r.share, r.of
	}
	return use
}

// role is a node's part in fetching a release from the origin.
type role struct {
	share, of int    // of 0: no share
	members   int    // agents ranked
	replaced  string // the banned feeder whose share this is, if any
}

func (r role) fields(banned []string) []zap.Field {
	f := []zap.Field{zap.Int("share", r.share), zap.Int("of", r.of), zap.Int("members", r.members)}
	if r.replaced != "" {
		f = append(f, zap.String("in_place_of", r.replaced), zap.Strings("banned_ips", banned))
	}
	return f
}

// feederRole is this node's share of m's pieces from the origin among the
// members it knows now, a member whose torrent address' IP is in banned
// counting as a feeder no more.
func (a *Agent) feederRole(m release.Manifest, banned []string) role {
	var names, out []string
	for _, mbr := range a.view.Members() {
		// Only this environment's agents fetch this release: feeders
		// elsewhere would never take their share.
		if mbr.Role == gossip.RoleSeeder || mbr.Env != a.cfg.Env {
			continue
		}
		names = append(names, mbr.Name)
		if mbr.Name != a.cfg.Name && addrBanned(mbr.TorrentAddr, banned) {
			out = append(out, mbr.Name)
		}
	}
	if !slices.Contains(names, a.cfg.Name) {
		names = append(names, a.cfg.Name)
	}
	share, of, replaced := feederShare(m.ReleaseID, names, a.cfg.OriginFeeders, a.cfg.Name, out)
	return role{share: share, of: of, members: len(names), replaced: replaced}
}

// feederShare is self's share of a release's origin pieces among names:
// the first k = min(feeders, len(names)) names by feederRank hold shares 0
// to k-1, except those in banned (by this node), whose shares go, in
// share order, to the names ranked after the first k that are not banned,
// in rank order. A feeder's share stays where it was, so nodes that have
// and have not banned a feeder agree on everyone else's: only the
// replacements differ, and they agree on those too while they banned the
// same feeders (or the same first ones in share order). of is 0 if self
// has no share; replaced names the banned feeder whose share self took.
func feederShare(id release.ID, names []string, feeders int, self string, banned []string) (share, of int, replaced string) {
	rank := feederRank(id, names)
	k := min(feeders, len(rank))
	next := k
	for i, n := range rank[:k] {
		holder := n
		if slices.Contains(banned, n) {
			for next < len(rank) && slices.Contains(banned, rank[next]) {
				next++
			}
			if next == len(rank) {
				continue // nobody left to take it
			}
			holder = rank[next]
			next++
		}
		if holder == self {
			if holder != n {
				replaced = n
			}
			return i, k, replaced
		}
	}
	return 0, 0, ""
}

// addrBanned reports whether the host of a "host:port" torrent address is
// one of the IPs in banned (swarm.Client.BannedIPs).
func addrBanned(addr string, banned []string) bool {
	if len(banned) == 0 || addr == "" {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return slices.Contains(banned, host)
}

// feederRank orders names by the hash of id and name: a different order
// for every release, the same on every node.
func feederRank(id release.ID, names []string) []string {
	key := func(n string) [32]byte { return sha256.Sum256([]byte(string(id) + "\x00" + n)) }
	out := slices.Clone(names)
	slices.SortFunc(out, func(x, y string) int {
		kx, ky := key(x), key(y)
		return bytes.Compare(kx[:], ky[:])
	})
	return out
}

// sources lists the origin and up to MaxPeers random peers for m: at least
// half of them, if there are that many, peers that gossip progress with it
// (holders), then peers that advertise it, then, while fewer than MaxPeers
// advertise it, members the rollout admits to it that have not said so yet.
//
// Holders have the torrent's info dictionary and pieces to give; a node that
// knows only peers with nothing waits for them to get something, and for the
// info dictionary a hop at a time. The rest stays random so that the first
// holders are not every node's only peers. Admitted members start the same
// release within a gossip round: dialling them before their state has
// spread saves the round (a dial to a node that has not added the release
// yet fails, and is tried again a few seconds later).
func (a *Agent) sources(m release.Manifest) swarm.Sources {
	var src swarm.Sources
	var holders, others, coming []string
	d, _, haveDesired := a.view.Desired(a.key(m.App))
	if haveDesired {
		if tm, err := d.Target.Unverified(); err != nil || tm.ReleaseID != m.ReleaseID {
			haveDesired = false
		}
	}
	for _, mbr := range a.view.Members() {
		if mbr.Name == a.cfg.Name || mbr.TorrentAddr == "" {
			continue
		}
		if mbr.Role == gossip.RoleSeeder {
			src.Origins = append(src.Origins, mbr.TorrentAddr)
			continue
		}
		i := slices.IndexFunc(mbr.Apps, func(as gossip.AppState) bool { return as.ReleaseID == m.ReleaseID })
		switch {
		case i >= 0 && mbr.Apps[i].Phase == gossip.PhaseFailed:
		case i >= 0 && mbr.Apps[i].Progress > 0:
			holders = append(holders, mbr.TorrentAddr)
		case i >= 0:
			others = append(others, mbr.TorrentAddr)
		case haveDesired && mbr.Env == a.cfg.Env && rollout.Admitted(mbr.Name, &d, m.ReleaseID):
			coming = append(coming, mbr.TorrentAddr)
		}
	}
	src.Peers = pickPeers(holders, others, a.cfg.MaxPeers)
	if n := a.cfg.MaxPeers - len(src.Peers); n > 0 && len(coming) > 0 {
		rand.Shuffle(len(coming), func(i, j int) { coming[i], coming[j] = coming[j], coming[i] })
		src.Peers = append(src.Peers, coming[:min(n, len(coming))]...)
	}
	return src
}

// pickPeers picks up to limit peers at random, at least half of them (or
// every one) from holders.
func pickPeers(holders, others []string, limit int) []string {
	shuffle := func(s []string) { rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] }) }
	shuffle(holders)
	n := min(len(holders), (limit+1)/2)
	rest := append(slices.Clone(holders[n:]), others...)
	shuffle(rest)
	return append(holders[:n:n], rest[:min(len(rest), limit-n)]...)
}

// refreshPeers tells running downloads of peers that appeared since.
func (a *Agent) refreshPeers() {
	a.mu.Lock()
	var ids []release.ID
	var apps []appState
	for app, w := range a.workers {
		if st, ok := a.apps[app]; ok && st.Phase == gossip.PhaseDownloading && st.ReleaseID == w.id {
			ids = append(ids, w.id)
			apps = append(apps, st)
		}
	}
	a.mu.Unlock()
	for i, id := range ids {
		a.torrent.AddSources(id, a.sources(release.Manifest{App: apps[i].App, ReleaseID: id}))
	}
}
