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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
// storage errors to the storage watch, which logs a line per change of
// state, its other errors and warnings as such, its info (a line per
// request or group change) and debug lines at debug. The failures of kfake's attempts to
// save sasl.json, which prepareDataDir makes fail on purpose, are dropped.
type brokerLogger struct {
	log   *slog.Logger
	watch *storageWatch // nil in memory
}

func (l *brokerLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	args = dropSASLSaveErrors(format, args)
	if args == nil {
		return
	}
	if kind := storageKind(format, args); kind != "" && l.watch != nil {
		l.watch.failed(kind, fmt.Sprintf(format, args...))
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

// Storage error kinds, the values of the kind label of
// ddnn_broker_storage_errors_total: the file a failed write was for, or
// load for corrupt data kfake dropped while loading.
const (
	storageSegment   = "segment"
	storageGroupsLog = "groups_log"
	storagePIDsLog   = "pids_log"
	storageState     = "state"
	storageLoad      = "load"
	// A torn tail or a commit past its partition's end dropped at start
	// after an unclean stop (checkDataDir).
	storageRecovery = "recovery"
)

// storageKind is the kind of a kfake log line that reports a storage
// error, "" for any other line.
func storageKind(format string, args []any) string {
	switch {
	case strings.HasPrefix(format, "persist batch"), strings.HasPrefix(format, "rebuildSegments"),
		strings.HasPrefix(format, "endTx: failed to persist"), strings.HasPrefix(format, "delete topic"):
		return storageSegment
	case strings.HasPrefix(format, "persist group entry"), strings.HasPrefix(format, "compact groups.log"):
		return storageGroupsLog
	case strings.HasPrefix(format, "persist pid entry"), strings.HasPrefix(format, "compact pids.log"):
		return storagePIDsLog
	case format == "persist %s: %v", strings.HasPrefix(format, "persist to disk"), strings.HasPrefix(format, "save session state"):
		return storageState
	case strings.Contains(format, "corrupt"), strings.Contains(format, "truncat"):
		return storageLoad
	}
	return ""
}

// storageMetrics are the broker's storage metrics.
type storageMetrics struct {
	errors  *prometheus.CounterVec
	failing prometheus.Gauge
}

func newStorageMetrics(reg prometheus.Registerer) (*storageMetrics, error) {
	m := &storageMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ddnn_broker_storage_errors_total",
			Help: "Storage errors of the embedded broker by kind: failed writes of a segment, groups_log (commits), pids_log or state file, load (corrupt data dropped at start), and recovery (a torn tail or a commit past its partition's end dropped at start after an unclean stop).",
		}, []string{"kind"}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ddnn_broker_storage_failing",
			Help: "1 while the embedded broker's writes to its data directory fail (produces and commits are refused), else 0.",
		}),
	}
	for _, k := range []string{storageSegment, storageGroupsLog, storagePIDsLog, storageState, storageLoad, storageRecovery} {
		m.errors.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.errors, m.failing} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("broker storage metrics: %w", err)
		}
	}
	return m, nil
}

// storageWatch turns kfake's storage error lines into a state: it logs
// the change to failing once, with the first error, and counts every
// error. kfake reports failures only, so recovery is probed: after a
// whole probeEvery without a storage error, a small file is written to the
// data directory; when that succeeds (and no error came meanwhile) the
// recovery is logged once.
type storageWatch struct {
	log        *slog.Logger
	m          *storageMetrics
	dir        string
	probeEvery time.Duration

	mu       sync.Mutex
	total    int // storage errors since the start
	failing  bool
	since    time.Time
	errs     int  // errors in this failing period
	recent   bool // an error since the last probe
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

func newStorageWatch(log *slog.Logger, m *storageMetrics, dir string, probeEvery time.Duration) *storageWatch {
	w := &storageWatch{log: log, m: m, dir: dir, probeEvery: probeEvery,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go w.run()
	return w
}

// failed records a storage error of kind.
func (w *storageWatch) failed(kind, msg string) {
	w.m.errors.WithLabelValues(kind).Inc()
	if kind == storageLoad {
		// Corrupt data dropped at start: one line each, it happens once.
		w.log.Error("broker storage: corrupt data dropped while loading", "kind", kind, "err", msg)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total++
	w.errs++
	w.recent = true
	if w.failing {
		return
	}
	w.failing, w.since = true, time.Now()
	w.m.failing.Set(1)
	w.log.Error("broker storage failing: writes to the data directory fail; produces and commits are refused until they succeed again",
		"data_dir", w.dir, "kind", kind, "err", msg)
}

func (w *storageWatch) run() {
	defer close(w.stopped)
	t := time.NewTicker(w.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		quiet := w.failing && !w.recent
		w.recent = false
		w.mu.Unlock()
		if !quiet {
			continue
		}
		err := w.probe()
		w.mu.Lock()
		if err == nil && !w.recent && w.failing {
			w.failing = false
			w.m.failing.Set(0)
			w.log.Info("broker storage recovered: writes to the data directory succeed again",
				"data_dir", w.dir, "failed_writes", w.errs, "failing_for", time.Since(w.since).Round(time.Millisecond).String())
			w.errs = 0
		}
		w.mu.Unlock()
	}
}

// probe writes, syncs and removes a small file in the data directory.
func (w *storageWatch) probe() error {
	path := filepath.Join(w.dir, "probe.tmp")
	os.Remove(path)
	err := writeFileSync(path, make([]byte, 4096))
	os.Remove(path)
	return err
}

// errorCount is the number of storage errors since the start.
func (w *storageWatch) errorCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

func (w *storageWatch) isFailing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failing
}

func (w *storageWatch) close() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.stopped
}
