package kafka

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// writeSegments writes parts partitions of segs segment files of segSize
// bytes each to dir, of valid batches of batchSize bytes holding one
// record each (the check does not read the records).
func writeSegments(t *testing.T, dir string, parts, segs, segSize, batchSize int) {
	t.Helper()
	batch := make([]byte, batchSize)
	binary.BigEndian.PutUint32(batch[8:], uint32(batchSize-12))
	batch[16] = 2
	binary.BigEndian.PutUint32(batch[57:], 1)
	for i := batchHeaderSize; i < batchSize; i++ {
		batch[i] = byte(i * 7)
	}
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crc32c))
	perSeg := segSize / batchSize
	for p := range parts {
		pdir := filepath.Join(dir, "partitions", fmt.Sprintf("big-%d", p))
		if err := os.MkdirAll(pdir, 0o700); err != nil {
			t.Fatal(err)
		}
		off := int64(0)
		for range segs {
			f, err := os.Create(filepath.Join(pdir, fmt.Sprintf("%020d.dat", off)))
			if err != nil {
				t.Fatal(err)
			}
			for range perSeg {
				binary.BigEndian.PutUint64(batch, uint64(off))
				if _, err := f.Write(batch); err != nil {
					t.Fatal(err)
				}
				off++
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// allocDuring runs f and returns the bytes allocated meanwhile and the
// largest heap in use seen above the heap before it (sampled).
func allocDuring(f func()) (alloc, peak uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > before.HeapInuse {
				peak = max(peak, m.HeapInuse-before.HeapInuse)
			}
			select {
			case <-stop:
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, peak
}

// TestCheckMemoryBounded: the start's check and the repair of a data
// directory of 128 MiB of segments (2 partitions of 2 segments of 32 MiB,
// in 1 MiB batches) allocate far less than the data: they read a segment
// a window at a time, keeping only where the batches are.
func TestCheckMemoryBounded(t *testing.T) {
	const (
		mib      = 1 << 20
		segSize  = 32 * mib
		bound    = 32 * mib
		segments = 2
	)
	dir := filepath.Join(t.TempDir(), "data")
	writeSegments(t, dir, 2, segments, segSize, mib)
	var err error
	alloc, peak := allocDuring(func() { _, err = checkDataDir(dir, true) })
	if err != nil {
		t.Fatalf("check of undamaged segments: %v", err)
	}
	t.Logf("check of 128 MiB: allocated %.1f MiB, heap in use peaked %.1f MiB above its start", float64(alloc)/mib, float64(peak)/mib)
	if alloc > bound {
		t.Errorf("the check of 128 MiB of segments allocated %.1f MiB, more than %d MiB", float64(alloc)/mib, bound/mib)
	}

	// A flipped byte in the middle of the last segment of big-1.
	seg := filepath.Join(dir, "partitions", "big-1", fmt.Sprintf("%020d.dat", segSize/mib))
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, segSize/2+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var rep *RepairReport
	alloc, peak = allocDuring(func() { rep, err = RepairDataDir(dir) })
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	t.Logf("repair of 128 MiB: allocated %.1f MiB, heap in use peaked %.1f MiB above its start", float64(alloc)/mib, float64(peak)/mib)
	if alloc > bound {
		t.Errorf("the repair of 128 MiB of segments allocated %.1f MiB, more than %d MiB", float64(alloc)/mib, bound/mib)
	}
	if len(rep.Damage) != 1 || rep.Damage[0].First != 48 || rep.Damage[0].Last != 48 {
		t.Errorf("repair dropped %v, want batch 48 of big-1", rep.Damage)
	}
	if fi, err := os.Stat(seg); err != nil || fi.Size() != segSize-mib {
		t.Errorf("repaired segment: %v, %v; want %d bytes", fi.Size(), err, segSize-mib)
	}
	if _, err := checkDataDir(dir, true); err != nil {
		t.Errorf("check after the repair: %v", err)
	}
}
