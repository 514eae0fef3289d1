package memtune

import (
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 100}, {100 << 20, 100}, {1 << 30, 100}, {2 << 30, 50}, {4 << 30, 25}, {13 << 30, 7}, {100 << 30, MinPercent},
	} {
		if got := Percent(tc.live); got != tc.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// TestAfterLoadSetsPercent: with 1.25 GiB live (a pointer-free slice, like model weights; its pages
// are never touched) the GC percent becomes at most 80, and GOGC in the environment leaves it alone.
func TestAfterLoadSetsPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	big := make([]byte, 5<<28)
	p, live := AfterLoad()
	if live < uint64(len(big)) || p != Percent(live) || p > 80 {
		t.Fatalf("AfterLoad with %d MiB held: percent %d, live %d MiB", len(big)>>20, p, live>>20)
	}
	if got := debug.SetGCPercent(100); got != p {
		t.Fatalf("GC percent is %d, AfterLoad said %d", got, p)
	}
	big[0] = 2 // keep big live through AfterLoad
	t.Setenv("GOGC", "100")
	if p, _ := AfterLoad(); p != -1 {
		t.Fatalf("AfterLoad with GOGC set returned %d, want -1 (left alone)", p)
	}
}
