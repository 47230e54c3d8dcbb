package seeder

import (
	"fmt"

	"github.com/swarmdeploy/swarm/gossip"
)

// loadGossipKeys puts the keys of Config.GossipKeyFile into gc.
func (s *Seeder) loadGossipKeys(gc *gossip.Config) error {
	if s.cfg.GossipKeyFile == "" {
		return nil
	}
	keys, err := gossip.LoadKeyFile(s.cfg.GossipKeyFile)
	if err != nil {
		return fmt.Errorf("seeder: %w", err)
	}
	gc.SecretKeys = keys
	return nil
}

// watchGossipKeys prepares the key file's watcher, once gossip exists.
func (s *Seeder) watchGossipKeys() {
	if s.cfg.GossipKeyFile != "" {
		s.keys = gossip.NewKeyFile(s.cfg.GossipKeyFile, s.gossip, s.log)
	}
}

// ReloadGossipKeys reads Config.GossipKeyFile now (the daemon calls it on
// SIGHUP) and installs its keys if they changed; it reports whether they
// did. On an error the keys in use stay. Without a key file it does nothing.
func (s *Seeder) ReloadGossipKeys() (bool, error) {
	if s.keys == nil {
		return false, nil
	}
	return s.keys.Reload()
}
