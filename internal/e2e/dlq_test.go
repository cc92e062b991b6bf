package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
)

// TestOversizedRecordDeadLettered produces, with kcat, a record just under
// the broker's limit into the first tier's topic: its dead-letter copy
// would be over the limit with the headers added, so it is truncated; it
// reaches the DLQ within 5s with its reason and original size, and the
// partition moves on (an image produced after it gets a result).
func TestOversizedRecordDeadLettered(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat; make deps installs it)")
	}
	tp := writePipeline(t, "bigrec", 1, "")
	up(t, tp)
	dir := t.TempDir()
	big := make([]byte, 1_048_000)
	rand.Read(big)
	bigFile := filepath.Join(dir, "s.bin")
	if err := os.WriteFile(bigFile, big, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, testSet(t).Samples[0], 0o644); err != nil {
		t.Fatal(err)
	}
	topic := tp.name + ".edge.in"
	// One partition, so the image is behind the big record.
	kcatP := func(key, file string) {
		t.Helper()
		out, err := exec.Command("kcat", "-P", "-b", tp.broker, "-t", topic, "-p", "0", "-k", key,
			"-X", "message.max.bytes=10000000", file).CombinedOutput()
		if err != nil {
			t.Fatalf("kcat -P %s: %v: %s", key, err, out)
		}
	}
	start := time.Now()
	kcatP("big-1", bigFile)
	kcatP("after-big", img)

	var dlq string
	testsupport.WaitFor(t, 5*time.Second, "the big record on the DLQ", func() bool {
		out, _ := exec.Command("kcat", "-C", "-b", tp.broker, "-t", tp.name+".edge.dlq", "-o", "beginning", "-e", "-q",
			"-X", "fetch.message.max.bytes=10000000", "-f", "%k %S %h\n").Output()
		dlq = string(out)
		return strings.Contains(dlq, "big-1")
	})
	took := time.Since(start)
	for _, want := range []string{
		"ddnn-reason=undecodable record: raw value has 1048000 bytes, want 784",
		"ddnn-original-size=1048000",
		"ddnn-source-topic=" + topic,
		"ddnn-source-partition=0",
		"ddnn-truncated=value cut to ",
	} {
		if !strings.Contains(dlq, want) {
			t.Errorf("dead letter lacks %q: %s", want, dlq)
		}
	}
	got := collectResults(t, tp.broker, tp.name+".results", "after-big", 1, 30*time.Second)
	if len(got["after-big"]) != 1 {
		t.Errorf("the image after the big record has %d results, want 1", len(got["after-big"]))
	}
	t.Logf("dead-lettered in %s: %s", took.Round(time.Millisecond), fmt.Sprint(strings.Fields(dlq)[:2]))
}
