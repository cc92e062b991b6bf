package bench

import (
	"testing"
	"time"
)

func TestPaperSchedule(t *testing.T) {
	for _, scale := range []float64{1, 20} {
		s, err := Workload{Kind: WorkloadPaper, Devices: 5, TimeScale: scale}.Schedule()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 5*400 {
			t.Fatalf("%d sends, want 2000", len(s))
		}
		// 100 s + 50 s + 33.3 s + 25 s less the last gap, plus the last
		// device's stagger (4/5 of the first 1 s period), all divided by
		// the scale.
		want := time.Duration((208.333 - 0.25 + 0.8) / scale * float64(time.Second))
		if got := Length(s); got < want-5*time.Millisecond || got > want+5*time.Millisecond {
			t.Errorf("scale %g: length %s, want %s", scale, got, want)
		}
		perDevice := map[int]int{}
		for i, x := range s {
			perDevice[x.Device]++
			if i > 0 && x.At < s[i-1].At {
				t.Fatalf("not ordered at %d", i)
			}
		}
		for d := 0; d < 5; d++ {
			if perDevice[d] != 400 {
				t.Errorf("device %d sends %d", d, perDevice[d])
			}
		}
		// Device 0's rate in its last phase is 4/s × scale.
		var d0 []time.Duration
		for _, x := range s {
			if x.Device == 0 {
				d0 = append(d0, x.At)
			}
		}
		if gap := d0[399] - d0[398]; gap < time.Duration(0.249/scale*1e9) || gap > time.Duration(0.251/scale*1e9) {
			t.Errorf("scale %g: last gap %s", scale, gap)
		}
	}
}

func TestOtherSchedules(t *testing.T) {
	cases := []struct {
		w      Workload
		n      int
		length time.Duration
	}{
		{Workload{Kind: WorkloadConstant, Devices: 4, Rate: 100, Duration: 10 * time.Second, TimeScale: 1}, 1000, 9990 * time.Millisecond},
		{Workload{Kind: WorkloadConstant, Devices: 4, Rate: 100, Duration: 10 * time.Second, TimeScale: 10}, 1000, 999 * time.Millisecond},
		{Workload{Kind: WorkloadStep, Devices: 2, Rate: 10, Duration: 8 * time.Second, Steps: 4, TimeScale: 1}, 20 + 40 + 60 + 80, 8*time.Second - 25*time.Millisecond},
		{Workload{Kind: WorkloadBurst, Devices: 3, Rate: 1000, Count: 3000, TimeScale: 1}, 3000, 2999 * time.Millisecond},
	}
	for _, c := range cases {
		s, err := c.w.Schedule()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != c.n || Length(s) < c.length-time.Millisecond || Length(s) > c.length+time.Millisecond {
			t.Errorf("%+v: %d sends over %s, want %d over %s", c.w, len(s), Length(s), c.n, c.length)
		}
		if s[1].Device != 1%c.w.Devices {
			t.Errorf("%+v: not round-robin", c.w)
		}
	}
}

func TestScheduleRejects(t *testing.T) {
	for _, w := range []Workload{
		{Kind: "ramp", Devices: 1, TimeScale: 1},
		{Kind: WorkloadPaper, Devices: 0, TimeScale: 1},
		{Kind: WorkloadPaper, Devices: 1, TimeScale: 0},
		{Kind: WorkloadConstant, Devices: 1, TimeScale: 1},
		{Kind: WorkloadStep, Devices: 1, Rate: 1, Duration: time.Second, TimeScale: 1},
		{Kind: WorkloadBurst, Devices: 1, Rate: 1, TimeScale: 1},
	} {
		if _, err := w.Schedule(); err == nil {
			t.Errorf("%+v: no error", w)
		}
	}
}
