package peftdef

import (
	"math"
	"strings"
	"testing"
)

func TestScaleAndRamp(t *testing.T) {
	scales := []struct {
		alpha float64
		rank  int
		rs    bool
		want  float64
	}{
		{8, 8, false, 1}, {16, 4, false, 4}, {8, 16, true, 2}, {3, 0, false, 0}, {3, -1, true, 0},
	}
	for _, c := range scales {
		if got := Scale(c.alpha, c.rank, c.rs); got != c.want {
			t.Errorf("Scale(%v, %d, %v) = %v, want %v", c.alpha, c.rank, c.rs, got, c.want)
		}
	}
	ramps := []struct {
		T, t int64
		want float64
	}{
		{0, 0, 1}, {0, 7, 1}, {10, 0, 0}, {10, -3, 0}, {10, 5, 0.5}, {10, 10, 1}, {10, 99, 1},
	}
	for _, c := range ramps {
		if got := Ramp(c.T, c.t); got != c.want {
			t.Errorf("Ramp(%d, %d) = %v, want %v", c.T, c.t, got, c.want)
		}
	}
}

func TestCheckScale(t *testing.T) {
	cases := []struct {
		alpha float64
		rank  int
		rs    bool
		want  string // "" = accepted
	}{
		{8, 8, false, ""},
		{-16, 8, true, ""},
		{math.MaxFloat32, 1, false, ""},
		{1e308, 8, false, "lora_alpha 1e+308 is +Inf in float32"},
		{-1e39, 8, false, "lora_alpha -1e+39 is -Inf in float32"},
		{1e-50, 8, false, "lora_alpha 1e-50 is 0 in float32"},
		{1.2e-45, 2, false, "lora_alpha/r = 1.2e-45/2 = 6e-46 is 0 in float32"},
		{9e-46, 2, true, "lora_alpha/sqrt(r) = 9e-46/sqrt(2)"},
		{math.NaN(), 8, false, "finite non-zero"},
		{math.Inf(1), 8, false, "finite non-zero"},
		{0, 8, false, "finite non-zero"},
	}
	for _, c := range cases {
		err := CheckScale(c.alpha, c.rank, c.rs)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckScale(%v, %d, %v): %v", c.alpha, c.rank, c.rs, err)
		case c.want != "" && err == nil:
			t.Errorf("CheckScale(%v, %d, %v) accepted", c.alpha, c.rank, c.rs)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("CheckScale(%v, %d, %v) = %q, want it to mention %q", c.alpha, c.rank, c.rs, err, c.want)
		}
	}
}
