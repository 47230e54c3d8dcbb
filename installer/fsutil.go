package installer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/swarmdeploy/swarm/atomicfile"
)

// Temporary names. Everything the installer writes goes first to a name that
// loading an app recognises as unfinished and removes.
const (
	tmpPrefix     = atomicfile.TempPrefix // unpack dirs, dirs being deleted, state and meta files being written
	tmpLinkPrefix = "current.tmp-"        // symlinks about to replace "current"
	currentName   = "current"
	stateName     = "state.json"
	metaDirName   = ".meta"
)

func randSuffix() string { return strings.ToLower(rand.Text()[:10]) }

// mkdirSync creates dir and its missing parents, syncing each parent whose
// entries changed, so that a directory created for a release is still there
// after a crash.
func mkdirSync(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return atomicfile.SyncDir(parent)
}

// syncTree fsyncs every regular file and directory under root, deepest first,
// so that a tree renamed into place after it holds its contents after a crash.
// release.Unpack writes without syncing. It stops between files once ctx
// ends.
func syncTree(ctx context.Context, root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			err = f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", root, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

// pointCurrent makes appDir/current a relative symlink to target atomically:
// a new symlink under a temporary name is renamed over the old one, then the
// directory is synced. An empty target removes current.
func pointCurrent(appDir, target string) error {
	cur := filepath.Join(appDir, currentName)
	if target == "" {
		if err := os.Remove(cur); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", cur, err)
		}
		return atomicfile.SyncDir(appDir)
	}
	tmp := filepath.Join(appDir, tmpLinkPrefix+randSuffix())
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("point %s at %s: %w", cur, target, err)
	}
	if err := os.Rename(tmp, cur); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("point %s at %s: %w", cur, target, err)
	}
	return atomicfile.SyncDir(appDir)
}

// readCurrent returns the target of appDir/current, or "" when there is none.
func readCurrent(appDir string) (string, error) {
	t, err := os.Readlink(filepath.Join(appDir, currentName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Join(appDir, currentName), err)
	}
	return t, nil
}

// removeDir deletes appDir/name. It first renames it to a temporary name, so
// that a crash halfway through a large tree leaves something that loading
// removes, never a half release under a release's name.
func removeDir(appDir, name string) error {
	p := filepath.Join(appDir, name)
	gone := filepath.Join(appDir, tmpPrefix+"rm-"+name+"-"+randSuffix())
	if err := os.Rename(p, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", p, err)
	}
	if err := atomicfile.SyncDir(appDir); err != nil {
		return err
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
