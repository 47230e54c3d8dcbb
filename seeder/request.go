package seeder

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// decodePublish reads the headers of a publish request: the signed
// manifest (ManifestHeader, required) and where and how the release rolls
// out (RolloutHeader, optional). It checks their form only: Publish
// verifies the manifest and checks the options.
func decodePublish(manifest, rollout string) (release.SignedManifest, PublishOptions, error) {
	raw, err := base64.StdEncoding.DecodeString(manifest)
	if err != nil || len(raw) == 0 {
		return release.SignedManifest{}, PublishOptions{}, fmt.Errorf("%w: missing or malformed %s header", release.ErrInvalid, ManifestHeader)
	}
	var sm release.SignedManifest
	if err := json.Unmarshal(raw, &sm); err != nil {
		return release.SignedManifest{}, PublishOptions{}, fmt.Errorf("%w: malformed manifest: %w", release.ErrInvalid, err)
	}
	var opts PublishOptions
	if rollout != "" {
		raw, err := base64.StdEncoding.DecodeString(rollout)
		if err == nil {
			err = decodeStrict(raw, &opts)
		}
		if err != nil {
			return release.SignedManifest{}, PublishOptions{}, fmt.Errorf("%w: malformed %s header: %w", release.ErrInvalid, RolloutHeader, err)
		}
	}
	return sm, opts, nil
}

// decodeCommand decodes the JSON body of a rollout command into v; an empty
// body leaves v as it is.
func decodeCommand(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := decodeStrict(b, v); err != nil {
		return fmt.Errorf("%w request body: %w", release.ErrInvalid, err)
	}
	return nil
}

// decodeStrict decodes b, which must hold exactly one JSON value with no
// field v does not have.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// checkRollout checks an environment and a plan against a fleet of that
// many nodes in the environment: what a publish or a promotion needs before
// it stores or issues anything.
func checkRollout(env string, p release.Plan, fleet int) error {
	if err := release.ValidateEnv(env); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	return rollout.ValidateAgainstFleet(p, env, fleet)
}
