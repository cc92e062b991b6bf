package kafka

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// The embedded broker's data directory holds records, committed offsets
// and kfake's state files. kfake (franz-go's pkg/kfake) creates its files
// 0644 and its directories 0755 and, at every start on an empty
// directory, at every clean stop and at every SCRAM change, saves the SASL
// users it knows, each with its salted password, to sasl.json, which is
// enough to log in as that user. ddnn keeps all of that to the broker's
// owner and keeps SASL credentials off the disk:
//
//   - the directory is 0700 and, at start and after stop, every directory
//     beneath it 0700 and every file 0600, so other local users can open
//     nothing in it, also what an older release left readable;
//   - sasl.json.tmp, the file kfake writes sasl.json through before
//     renaming it, is a directory, so kfake's every attempt to save the
//     users fails before a byte is written (the failure is expected and
//     not logged, see brokerLogger);
//   - on an empty directory ddnn writes meta.json itself, so kfake treats
//     the directory as one to load instead of saving its initial state
//     (which includes sasl.json and would fail);
//   - sasl.json and acls.json an older release kept are removed at start:
//     users and ACLs come from the pipeline at every start.

const (
	saslFile    = "sasl.json"
	saslTmpFile = saslFile + ".tmp"
	aclsFile    = "acls.json"
	metaFile    = "meta.json"
)

// initialMeta is kfake's meta.json of a new directory: its persistence
// format version 1 and its default cluster id.
const initialMeta = `{"version":1,"cluster_id":"kfake"}`

// prepareDataDir readies dir (locked, existing) for kfake as the package
// comment above says; restored reports whether it held a broker's data.
func prepareDataDir(dir string) (restored bool, err error) {
	if err := restrictDataDir(dir); err != nil {
		return false, err
	}
	for _, f := range []string{saslFile, aclsFile, aclsFile + ".tmp"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	tmp := filepath.Join(dir, saslTmpFile)
	if fi, err := os.Lstat(tmp); err == nil && !fi.IsDir() {
		if err := os.Remove(tmp); err != nil {
			return false, err
		}
	}
	if err := os.Mkdir(tmp, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return false, fmt.Errorf("keep SASL users off the disk: %w", err)
	}
	meta := filepath.Join(dir, metaFile)
	if _, err := os.Lstat(meta); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return false, writeFileSync(meta, []byte(initialMeta))
}

// restrictDataDir makes dir and every directory beneath it 0700 and every
// regular file beneath it 0600. Symbolic links are neither followed nor
// changed (the mode of a link's target is not the broker's to change).
func restrictDataDir(dir string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	var errs []error
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = 0o700
		case d.Type().IsRegular():
			want = 0o600
		default:
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		if fi.Mode().Perm() != want {
			if err := os.Chmod(path, want); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// writeFileSync writes a new owner-only file and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// brokerLogger hands kfake's log lines to log (component=broker): its
// errors and warnings as such, its info (a line per request or group
// change) and debug lines at debug. The failures of kfake's attempts to
// save sasl.json, which prepareDataDir makes fail on purpose, are dropped.
type brokerLogger struct {
	log *slog.Logger
}

func (l *brokerLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	args = dropSASLSaveErrors(format, args)
	if args == nil {
		return
	}
	var lvl slog.Level
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	default: // kfake's info is a line per request or group change
		lvl = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), lvl) {
		return
	}
	l.log.Log(context.Background(), lvl, fmt.Sprintf(format, args...))
}

// dropSASLSaveErrors removes from a kfake log line's arguments the
// errors of saving sasl.json: it returns nil when nothing is left to log.
func dropSASLSaveErrors(format string, args []any) []any {
	if format == "persist %s: %v" && len(args) == 2 && args[0] == "sasl" {
		return nil
	}
	if len(args) != 1 {
		return args
	}
	err, ok := args[0].(error)
	if !ok || !strings.Contains(err.Error(), saslTmpFile) {
		return args
	}
	var rest []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !strings.Contains(e.Error(), saslTmpFile) {
				rest = append(rest, e)
			}
		}
	}
	if len(rest) == 0 {
		return nil
	}
	return []any{errors.Join(rest...)}
}
