package lm

import (
	"slices"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
)

func TestPadRows(t *testing.T) {
	for _, c := range []struct {
		name                  string
		rows                  [][]int
		multiple, maxLen, pad int
		wantL                 int
		wantIDs               []int32
		wantMask              []float32
	}{
		{"round up to the multiple", [][]int{{5, 6, 7}, {8}}, 4, 16, 0, 4,
			[]int32{5, 6, 7, 0, 8, 0, 0, 0}, []float32{1, 1, 1, 0, 1, 0, 0, 0}},
		{"capped at maxLen", [][]int{{1, 2, 3}}, 8, 5, 9, 5, []int32{1, 2, 3, 9, 9}, []float32{1, 1, 1, 0, 0}},
		{"a row longer than maxLen keeps its length", [][]int{{1, 2, 3}}, 2, 2, 0, 3, []int32{1, 2, 3}, []float32{1, 1, 1}},
		{"empty row", [][]int{{}}, 0, 4, 7, 1, []int32{7}, []float32{0}},
	} {
		ids, mask := PadRows(c.rows, c.multiple, c.maxLen, c.pad)
		if d := ids.Shape().Dimensions; d[0] != len(c.rows) || d[1] != c.wantL {
			t.Errorf("%s: shape %v, want [%d %d]", c.name, d, len(c.rows), c.wantL)
			continue
		}
		if got := tensors.MustCopyFlatData[int32](ids); !slices.Equal(got, c.wantIDs) {
			t.Errorf("%s: ids %v, want %v", c.name, got, c.wantIDs)
		}
		if got := tensors.MustCopyFlatData[float32](mask); !slices.Equal(got, c.wantMask) {
			t.Errorf("%s: mask %v, want %v", c.name, got, c.wantMask)
		}
	}
}
