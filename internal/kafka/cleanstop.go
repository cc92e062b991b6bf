package kafka

import (
	"errors"
	"os"
	"path/filepath"
)

// cleanStopFile is the file Broker.Close writes once kfake has saved its
// state (and synced its files), and the start removes before kfake loads
// the directory: its absence at start says the broker did not stop
// cleanly (killed, a crash of the machine, a power loss), as Apache
// Kafka's .kafka_cleanshutdown does. kfake's own snapshot.json cannot say
// it: kfake writes it at a clean stop but leaves it in place at start, so
// after a crash it is the one of some earlier stop.
const cleanStopFile = "clean_stop"

// markCleanStop records a clean stop of the broker of dir.
func markCleanStop(dir string) error {
	path := filepath.Join(dir, cleanStopFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeFileSync(path, nil); err != nil {
		return err
	}
	return syncDir(dir)
}

// cleanStopped reports whether dir's broker stopped cleanly last.
func cleanStopped(dir string) (bool, error) {
	path := filepath.Join(dir, cleanStopFile)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}

// dropCleanStop removes the record of the last clean stop as the broker
// starts: until its next clean stop, a crash may cut the directory short.
func dropCleanStop(dir string) error {
	if err := os.Remove(filepath.Join(dir, cleanStopFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
