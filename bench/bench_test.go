package bench

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestWorkloadNames checks that every default workload can be found by its name and that names
// are unique (the subprocess protocol and the PyTorch script rely on them).
func TestWorkloadNames(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Presets {
		ws, err := Workloads(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if seen[w.Name] || !strings.HasPrefix(w.Name, p+"/") {
				t.Errorf("bad or duplicate workload name %q", w.Name)
			}
			seen[w.Name] = true
			f, err := Find(w.Name)
			if err != nil || f.Name != w.Name {
				t.Errorf("Find(%q) = %q, %v", w.Name, f.Name, err)
			}
		}
	}
	if _, err := Workloads("bert-base-4l", []string{"nosuch"}); err == nil {
		t.Error("unknown method accepted")
	}
	if _, err := Workloads("nosuch", nil); err == nil {
		t.Error("unknown preset accepted")
	}
}

// TestRunSmallLayer runs a tiny layer workload end to end and checks the result's fields.
func TestRunSmallLayer(t *testing.T) {
	for _, v := range []string{"singlora", "lora", "naive"} {
		w := LayerWorkload(64, 48, 4, v)
		r, err := Run(w, 2, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.MsMedian <= 0 || r.Steps != 2 || r.PeakRSSMB <= 0 || r.GFLOPs <= 0 || r.Impl != "go" {
			t.Errorf("%s: unexpected result %+v", v, r)
		}
		back, err := ParseResult(r.JSON())
		if err != nil || back.Workload != r.Workload || back.MsMedian != r.MsMedian {
			t.Errorf("JSON round trip: %+v, %v", back, err)
		}
	}
}
