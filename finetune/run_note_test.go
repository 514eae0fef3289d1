package finetune

import (
	"testing"

	"github.com/singlora/singlora/classify"
)

func TestClippedNote(t *testing.T) {
	d := func(n, clipped int) *classify.Data {
		return &classify.Data{Rows: make([][]int, n), Clipped: clipped}
	}
	for _, tc := range []struct {
		splits map[string]*classify.Data
		want   string
	}{
		{map[string]*classify.Data{"training": d(90, 0), "validation": d(10, 0)}, ""},
		{map[string]*classify.Data{"training": d(90, 3), "validation": d(10, 0), "test": d(20, 1)}, "3 of 90 training texts, 1 of 20 test texts"},
		{map[string]*classify.Data{"training": d(90, 0), "validation": d(10, 2), "test": nil}, "2 of 10 validation texts"},
	} {
		if got := clippedNote(tc.splits); got != tc.want {
			t.Errorf("clippedNote = %q, want %q", got, tc.want)
		}
	}
}
