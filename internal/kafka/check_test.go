package kafka

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/testsupport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The corruption tests seed a stopped broker's directory with topic "in"
// (partition 0: 200 records in 20 batches of 10, partition 1: 100 in 10)
// and group "g"'s commits, damage one file, and check what start says,
// what the repair reports, and what the group then reads: which records
// are lost, which come again.

const idHeader = "ddnn-id"

func seedDamageDir(t *testing.T, commits map[int32]int64) string {
	t.Helper()
	return seedDamageDirWith(t, commits)
}

// seedDamageDirWith seeds with the producer options opts added.
func seedDamageDirWith(t *testing.T, commits map[int32]int64, opts ...kgo.Opt) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	b, err := StartBroker("127.0.0.1:0", 2, []string{"in"}, nil, DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Manual flushing: each flush sends the 10 records as one batch
	// (with linger 0 kgo may send the first alone).
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ManualFlushing()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		failed error
	)
	for p, n := range map[int32]int{0: 200, 1: 100} {
		for i := 0; i < n; i += 10 {
			for j := i; j < i+10; j++ {
				id := fmt.Sprintf("m-%d-%03d", p, j)
				cl.Produce(ctx, &kgo.Record{Topic: "in", Partition: p, Key: []byte(id), Value: []byte("value of " + id),
					Headers: []kgo.RecordHeader{{Key: idHeader, Value: []byte(id)}}}, func(_ *kgo.Record, err error) {
					mu.Lock()
					failed = cmp.Or(failed, err)
					mu.Unlock()
				})
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			err := failed
			mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	offs := kadm.Offsets{}
	for p, o := range commits {
		offs.Add(kadm.Offset{Topic: "in", Partition: p, At: o, LeaderEpoch: -1})
	}
	if err := kadm.NewClient(cl).CommitAllOffsets(ctx, "g", offs); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readGroup reads "in" as group g from its commits to the end of every
// partition (after produce more records to partition 0), returning the ids
// read per partition in order.
func readGroup(t *testing.T, dir string, more int) map[int32][]string {
	t.Helper()
	b, err := StartBroker("127.0.0.1:0", 2, []string{"in"}, nil, DataDir(dir))
	if err != nil {
		t.Fatalf("start after repair: %v", err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for i := range more {
		id := fmt.Sprintf("new-%d", i)
		if err := pr.ProduceSync(ctx, &kgo.Record{Topic: "in", Partition: 0, Key: []byte(id), Headers: []kgo.RecordHeader{{Key: idHeader, Value: []byte(id)}}}).FirstErr(); err != nil {
			t.Fatalf("produce after repair: %v", err)
		}
	}
	ends, err := kadm.NewClient(pr).ListEndOffsets(ctx, "in")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[int32][]string{}
	next := map[int32]int64{}
	done := func() bool {
		for p := range int32(2) {
			e, _ := ends.Lookup("in", p)
			if n, ok := next[p]; (ok && n < e.Offset) || (!ok && e.Offset > 0 && !committedAtEnd(ctx, t, pr, p, e.Offset)) {
				return false
			}
		}
		return true
	}
	for !done() {
		if ctx.Err() != nil {
			t.Fatalf("group read %v by the deadline, ends %v", next, ends)
		}
		fs := cl.PollFetches(ctx)
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Fatalf("fetch after repair: %v", e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			id := string(r.Key)
			for _, h := range r.Headers {
				if h.Key == idHeader {
					id = string(h.Value)
				}
			}
			got[r.Partition] = append(got[r.Partition], id)
			next[r.Partition] = r.Offset + 1
		})
	}
	return got
}

// committedAtEnd: the group's commit for partition p is at end (nothing
// to read there).
func committedAtEnd(ctx context.Context, t *testing.T, cl *kgo.Client, p int32, end int64) bool {
	os, err := kadm.NewClient(cl).FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := os.Lookup("in", p)
	return ok && o.At == end
}

func ids(p int32, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("m-%d-%03d", p, i))
	}
	return out
}

func newIDs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("new-%d", i))
	}
	return out
}

// startRefused starts a broker on dir, which must refuse, and returns
// what it says.
func startRefused(t *testing.T, dir string) string {
	t.Helper()
	b, err := StartBroker("127.0.0.1:0", 2, []string{"in"}, nil, DataDir(dir))
	if err == nil {
		b.Close()
		t.Fatal("the broker started on a damaged directory")
	}
	var de *DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("start: %v, want a DamagedError", err)
	}
	t.Logf("start says:\n%v", err)
	return err.Error()
}

func repair(t *testing.T, dir string) (*RepairReport, string) {
	t.Helper()
	rep, err := RepairDataDir(dir)
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	var buf bytes.Buffer
	rep.Write(&buf, idHeader)
	t.Logf("repair reports:\n%s", buf.String())
	// A second repair finds nothing.
	again, err := RepairDataDir(dir)
	if err != nil || len(again.Damage) != 0 || len(again.Commits) != 0 {
		t.Errorf("second repair: %+v %v", again, err)
	}
	return rep, buf.String()
}

func mustContain(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// batchAt finds the readable batch of a segment file holding byte pos.
func batchAt(t *testing.T, raw []byte, pos int) batchSpan {
	t.Helper()
	good, bad, err := scanSegment(newSegReader(bytes.NewReader(raw), len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("segment damaged before the test damaged it: %v", bad)
	}
	for _, b := range good {
		if pos >= b.pos && pos < b.pos+b.size {
			return b
		}
	}
	t.Fatalf("no batch at byte %d", pos)
	return batchSpan{}
}

// TestCorruptSegmentMiddle: a byte flipped at 40 % of a partition's
// segment. kfake alone would cut the file there, dropping every later
// record. The start is refused naming the file, the bytes and the
// offsets; the repair drops that one batch and reports its records'
// ids; the group then reads every other record after its commit and new
// ones, with no duplicate.
func TestCorruptSegmentMiddle(t *testing.T) {
	dir := seedDamageDir(t, map[int32]int64{0: 60, 1: 100})
	seg := filepath.Join(dir, "partitions", "in-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	pos := len(raw) * 40 / 100
	hit := batchAt(t, raw, pos)
	if pos < hit.pos+21 {
		// The batch's base offset, length, leader epoch, magic and CRC
		// are not covered by its CRC (TestCorruptSegmentBaseOffset
		// flips the offset): flip a byte of its records instead.
		pos = hit.pos + hit.size/2
	}
	raw[pos] ^= 0x01
	os.WriteFile(seg, raw, 0o600)

	said := startRefused(t, dir)
	mustContain(t, "the refusal", said,
		fmt.Sprintf("partitions/in-0/0.dat: bytes %d-%d of %d fail their checksum (CRC-32C): offsets %d-%d of in-0 (10 records", hit.pos, hit.pos+hit.size, len(raw), hit.first, hit.last),
		"ddnn broker repair")

	rep, out := repair(t, dir)
	mustContain(t, "the report", out, fmt.Sprintf("lost: 10 records of in-0 (offsets %d-%d) group g had not processed (committed 60)", hit.first, hit.last))
	// The records before the flipped byte are named; where it lands (a
	// length, a value) decides whether those after it can be read, so
	// how many varies with the batch's bytes.
	if n := len(rep.Records); n < 1 || n > 10 {
		t.Errorf("%d of the 10 dropped records read", n)
	}
	for _, r := range rep.Records {
		if r.Offset < hit.first || r.Offset > hit.last {
			t.Errorf("a record at offset %d reported dropped, outside the damaged batch %d-%d", r.Offset, hit.first, hit.last)
		}
		if id, _ := r.Header(idHeader); id != fmt.Sprintf("m-0-%03d", r.Offset) && !bytes.Equal(r.Key, []byte(fmt.Sprintf("m-0-%03d", r.Offset))) {
			t.Logf("record at %d reads as %q (the flipped byte)", r.Offset, id)
		}
	}

	got := readGroup(t, dir, 5)
	want := append(append(ids(0, 60, int(hit.first)), ids(0, int(hit.last)+1, 200)...), newIDs(5)...)
	if fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("partition 0 after the repair read\n%v\nwant\n%v", got[0], want)
	}
	if len(got[1]) != 0 {
		t.Errorf("partition 1 (committed at its end) read again: %v", got[1])
	}
	t.Logf("lost %d records (offsets %d-%d), duplicates %d", 10, hit.first, hit.last, len(got[0])-len(want))
}

// TestCorruptSegmentTail: the last 100 bytes of a segment cut off, with
// the group committed past what remains. kfake alone would drop the cut
// batch without a word and keep the commit past the end. The start is
// refused; the repair drops the cut batch, sets the commit to the new
// end, and the group reads the records produced after, none skipped.
func TestCorruptSegmentTail(t *testing.T) {
	dir := seedDamageDir(t, map[int32]int64{0: 195, 1: 100})
	seg := filepath.Join(dir, "partitions", "in-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	last := batchAt(t, raw, len(raw)-1)
	if last.size <= 100 || last.first > 195 || last.last != 199 {
		t.Fatalf("the last batch is %d bytes: cutting 100 would cut it whole", last.size)
	}
	if err := os.Truncate(seg, int64(len(raw)-100)); err != nil {
		t.Fatal(err)
	}

	said := startRefused(t, dir)
	mustContain(t, "the refusal", said,
		fmt.Sprintf("partitions/in-0/0.dat: bytes %d-%d of %d are a batch cut short (the file ends inside it), and the file is 100 bytes shorter than when the broker last stopped: offsets %d-199 of in-0 (%d records", last.pos, len(raw)-100, len(raw)-100, last.first, 200-last.first),
		"the broker had stopped cleanly")

	_, out := repair(t, dir)
	mustContain(t, "the report", out,
		"lost: 5 records of in-0 (offsets 195-199) group g had not processed (committed 195)",
		fmt.Sprintf("commit of group g for in-0 set from 195 to %d (past the partition's end)", last.first))

	got := readGroup(t, dir, 5)
	if fmt.Sprint(got[0]) != fmt.Sprint(newIDs(5)) {
		t.Errorf("partition 0 after the repair read %v, want the 5 new records", got[0])
	}
	t.Logf("lost 5 unprocessed records (195-199; 190-194 were processed), duplicates %d", len(got[0])-5)
}

// TestCorruptGroupsLog: a byte flipped in groups.log's first commit
// entry. kfake alone would drop that entry and every one after it (the
// other partitions' commits too). The start is refused; the repair drops
// that one entry and says which commit it held; only that partition is
// read again from its start.
func TestCorruptGroupsLog(t *testing.T) {
	dir := seedDamageDir(t, map[int32]int64{0: 150, 1: 80})
	path := filepath.Join(dir, "groups.log")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := scanLog(raw)
	var hit span
	for _, g := range good {
		if bytes.Contains(raw[g.from:g.to], []byte(`"type":"commit"`)) {
			hit = g
			break
		}
	}
	if hit.to == 0 {
		t.Fatalf("no commit entry in groups.log: %q", raw)
	}
	// The partition the entry is for, and its commit.
	e, _ := parseCommit(raw[hit.from+8 : hit.to])
	committed := map[int32]int64{0: 150, 1: 80}[e.Part]
	other := 1 - e.Part
	// Flip a byte of the entry's JSON, in the offset's digits.
	at := hit.from + logEntryHeader + bytes.Index(raw[hit.from+logEntryHeader:hit.to], []byte(`"o":`)) + 5
	raw[at] ^= 0x01
	os.WriteFile(path, raw, 0o600)
	t.Logf("flipped byte %d of groups.log (%d bytes), in the commit of in-%d", at, len(raw), e.Part)

	said := startRefused(t, dir)
	mustContain(t, "the refusal", said, fmt.Sprintf("groups.log: bytes %d-%d of %d fail their checksum (CRC-32C): 1 entry", hit.from, hit.to, len(raw)))

	_, out := repair(t, dir)
	mustContain(t, "the report", out, fmt.Sprintf("for in-%d", e.Part), "reads it from its start again (duplicates)")

	got := readGroup(t, dir, 0)
	total := map[int32]int{0: 200, 1: 100}
	if len(got[e.Part]) != total[e.Part] {
		t.Errorf("in-%d (commit lost) read %d records, want all %d again", e.Part, len(got[e.Part]), total[e.Part])
	}
	if fmt.Sprint(got[other]) != fmt.Sprint(ids(other, int(map[int32]int64{0: 150, 1: 80}[other]), total[other])) {
		t.Errorf("in-%d (commit kept) read %v", other, got[other])
	}
	t.Logf("lost 0 records; duplicates %d (in-%d read from 0, its commit was %d); in-%d read from its commit", committed, e.Part, committed, other)
}

// TestCorruptSegmentBaseOffset: a byte flipped in a batch's base offset,
// which its CRC-32C does not cover. kfake alone would load the batch at
// the wrong offset. The start is refused; the repair restores the offset
// from the batches around it and drops nothing.
func TestCorruptSegmentBaseOffset(t *testing.T) {
	dir := seedDamageDir(t, map[int32]int64{0: 60, 1: 100})
	seg := filepath.Join(dir, "partitions", "in-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	hit := batchAt(t, raw, len(raw)*40/100)
	raw[hit.pos+6] ^= 0x01 // offset + 256
	os.WriteFile(seg, raw, 0o600)

	said := startRefused(t, dir)
	mustContain(t, "the refusal", said,
		fmt.Sprintf("partitions/in-0/0.dat: bytes %d-%d of %d hold the base offset %d where the batches around say %d", hit.pos, hit.pos+8, len(raw), hit.first+256, hit.first))
	_, out := repair(t, dir)
	mustContain(t, "the report", out, fmt.Sprintf("restored partitions/in-0/0.dat: bytes %d-%d", hit.pos, hit.pos+8))
	if strings.Contains(out, "lost") {
		t.Errorf("the repair lost records:\n%s", out)
	}
	got := readGroup(t, dir, 5)
	if want := append(ids(0, 60, 200), newIDs(5)...); fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("partition 0 after the repair read\n%v\nwant\n%v", got[0], want)
	}
}

// uncleanStop makes dir look as a broker killed (or cut off by a power
// loss) before it ever stopped cleanly leaves it: no record of a clean
// stop and no kfake snapshot.json.
func uncleanStop(t *testing.T, dir string) {
	t.Helper()
	snaps, err := filepath.Glob(filepath.Join(dir, "partitions", "*", "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanStopFile)); err != nil {
		t.Fatalf("the seeding broker's clean stop left no mark: %v", err)
	}
	for _, f := range append(snaps, filepath.Join(dir, cleanStopFile)) {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUncleanStopTornTail: after an unclean stop, the last batch of in-0
// cut short (100 bytes of it never reached the disk) and the group's
// commit at 195 past the new end. The start drops the torn batch and sets
// the commit to the end by itself, as Apache Kafka's log recovery does,
// logging at ERROR what it dropped (the offsets, the readable ids) and
// counting it; the group then reads the records produced after, none
// skipped.
func TestUncleanStopTornTail(t *testing.T) {
	// Uncompressed, so the records of the torn batch before the cut can
	// still be read (a cut compressed batch does not decompress).
	dir := seedDamageDirWith(t, map[int32]int64{0: 195}, kgo.ProducerBatchCompression(kgo.NoCompression()))
	uncleanStop(t, dir)
	seg := filepath.Join(dir, "partitions", "in-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	last := batchAt(t, raw, len(raw)-1)
	if last.size <= 100 || last.first > 195 || last.last != 199 {
		t.Fatalf("the last batch is %+v: want one holding 195-199 and longer than 100 bytes", last)
	}
	if err := os.Truncate(seg, int64(len(raw)-100)); err != nil {
		t.Fatal(err)
	}

	var logs testsupport.Buffer
	reg := prometheus.NewRegistry()
	b, err := StartBroker("127.0.0.1:0", 2, []string{"in"}, slog.New(slog.NewTextHandler(&logs, nil)), DataDir(dir), BrokerMetrics(reg))
	if err != nil {
		t.Fatalf("start after an unclean stop with a torn tail: %v", err)
	}
	recovered := testutil.ToFloat64(b.watch.m.errors.WithLabelValues(storageRecovery))
	if _, err := os.Stat(filepath.Join(dir, cleanStopFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a running broker's directory is marked as stopped cleanly (%v)", err)
	}
	b.Close()
	if _, err := os.Stat(filepath.Join(dir, cleanStopFile)); err != nil {
		t.Errorf("a clean stop left no mark: %v", err)
	}
	t.Logf("start logs:\n%s", logs.String())
	mustContain(t, "the start's log", logs.String(),
		"level=ERROR msg=\"embedded broker recovered its data dir after an unclean stop: dropped a torn tail",
		fmt.Sprintf("file=partitions/in-0/0.dat bytes=\"%d-%d of %d\"", last.pos, len(raw)-100, len(raw)-100),
		fmt.Sprintf("topic=in partition=0 first_offset=%d", last.first),
		fmt.Sprintf("readable_ids=m-0-%03d,m-0-%03d,", last.first, last.first+1),
		"msg=\"embedded broker recovered its data dir after an unclean stop: records lost\"",
		"group=g topic=in partition=0 committed=195 first_offset=195",
		"msg=\"embedded broker recovered its data dir after an unclean stop: set a commit past its partition's end to the end\"",
		fmt.Sprintf("group=g topic=in partition=0 old_offset=195 new_offset=%d", last.first))
	if recovered != 2 {
		t.Errorf("ddnn_broker_storage_errors_total{kind=recovery} = %v, want 2 (the tail and the commit)", recovered)
	}

	got := readGroup(t, dir, 5)
	if fmt.Sprint(got[0]) != fmt.Sprint(newIDs(5)) {
		t.Errorf("partition 0 after the recovery read %v, want the 5 new records", got[0])
	}
	if fmt.Sprint(got[1]) != fmt.Sprint(ids(1, 0, 100)) {
		t.Errorf("partition 1 after the recovery read %d records, want its 100 (no commit)", len(got[1]))
	}
}

// TestUncleanStopMiddleRefused: after an unclean stop, a byte flipped in
// the middle of a segment is no write the stop interrupted: the start is
// still refused and changes nothing.
func TestUncleanStopMiddleRefused(t *testing.T) {
	dir := seedDamageDir(t, map[int32]int64{0: 120})
	uncleanStop(t, dir)
	seg := filepath.Join(dir, "partitions", "in-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	hit := batchAt(t, raw, len(raw)*40/100)
	raw[hit.pos+hit.size/2] ^= 0x01 // in its records, which its CRC covers
	if err := os.WriteFile(seg, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// And a torn tail of groups.log, which alone the start would drop.
	gl := filepath.Join(dir, "groups.log")
	glRaw, err := os.ReadFile(gl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(gl, int64(len(glRaw)-3)); err != nil {
		t.Fatal(err)
	}

	said := startRefused(t, dir)
	mustContain(t, "the refusal", said,
		fmt.Sprintf("partitions/in-0/0.dat: bytes %d-%d of %d fail their checksum (CRC-32C): offsets %d-%d of in-0", hit.pos, hit.pos+hit.size, len(raw), hit.first, hit.last),
		"groups.log: bytes",
		"the broker had not stopped cleanly, but this is more than the torn tail of an interrupted write")
	if now, err := os.ReadFile(seg); err != nil || !bytes.Equal(now, raw) {
		t.Errorf("the refused start changed the segment (%v)", err)
	}
	if fi, err := os.Stat(gl); err != nil || fi.Size() != int64(len(glRaw)-3) {
		t.Errorf("the refused start changed groups.log (%v)", err)
	}
}

// TestUncleanStopCommitPastEnd: after an unclean stop, the whole last
// batch of in-0 never reached the disk while the group's commit at 195
// did. The start sets the commit to the new end by itself, logging it,
// and the group skips none of the records produced after; after a clean
// stop the same is refused.
func TestUncleanStopCommitPastEnd(t *testing.T) {
	for _, unclean := range []bool{true, false} {
		t.Run(fmt.Sprintf("unclean=%v", unclean), func(t *testing.T) {
			dir := seedDamageDir(t, map[int32]int64{0: 195})
			if unclean {
				uncleanStop(t, dir)
			}
			seg := filepath.Join(dir, "partitions", "in-0", "0.dat")
			raw, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			last := batchAt(t, raw, len(raw)-1)
			if err := os.Truncate(seg, int64(last.pos)); err != nil {
				t.Fatal(err)
			}
			if !unclean {
				mustContain(t, "the refusal", startRefused(t, dir),
					fmt.Sprintf("are missing (the file is %d bytes shorter than when the broker last stopped)", last.size))
				return
			}
			var logs testsupport.Buffer
			b, err := StartBroker("127.0.0.1:0", 2, []string{"in"}, slog.New(slog.NewTextHandler(&logs, nil)), DataDir(dir))
			if err != nil {
				t.Fatalf("start after an unclean stop with a commit past the end: %v", err)
			}
			recovered := testutil.ToFloat64(b.watch.m.errors.WithLabelValues(storageRecovery))
			b.Close()
			mustContain(t, "the start's log", logs.String(),
				"level=ERROR msg=\"embedded broker recovered its data dir after an unclean stop: set a commit past its partition's end to the end\"",
				fmt.Sprintf("group=g topic=in partition=0 old_offset=195 new_offset=%d", last.first))
			if recovered != 1 {
				t.Errorf("ddnn_broker_storage_errors_total{kind=recovery} = %v, want 1", recovered)
			}
			if got := readGroup(t, dir, 5); fmt.Sprint(got[0]) != fmt.Sprint(newIDs(5)) {
				t.Errorf("partition 0 after the recovery read %v, want the 5 new records", got[0])
			}
		})
	}
}
