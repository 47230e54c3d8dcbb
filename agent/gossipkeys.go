package agent

import (
	"fmt"

	"github.com/swarmdeploy/swarm/gossip"
)

// loadGossipKeys puts the keys of Config.GossipKeyFile into gc.
func (a *Agent) loadGossipKeys(gc *gossip.Config) error {
	if a.cfg.GossipKeyFile == "" {
		return nil
	}
	keys, err := gossip.LoadKeyFile(a.cfg.GossipKeyFile)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	gc.SecretKeys = keys
	return nil
}

// watchGossipKeys prepares the key file's watcher, once gossip exists.
func (a *Agent) watchGossipKeys() {
	if a.cfg.GossipKeyFile != "" {
		a.keys = gossip.NewKeyFile(a.cfg.GossipKeyFile, a.gossip, a.log)
	}
}

// ReloadGossipKeys reads Config.GossipKeyFile now (the daemon calls it on
// SIGHUP) and installs its keys if they changed; it reports whether they
// did. On an error the keys in use stay. Without a key file it does nothing.
func (a *Agent) ReloadGossipKeys() (bool, error) {
	if a.keys == nil {
		return false, nil
	}
	return a.keys.Reload()
}
