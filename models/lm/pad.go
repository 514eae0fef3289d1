package lm

import "github.com/gomlx/gomlx/core/tensors"

// PadRows right-pads token rows with pad to one length L, the longest row rounded up to a
// multiple of multiple but at most max(maxLen, longest row), as encoders batch texts for
// classification: ids [B, L] int32 and mask [B, L] float32, 1 at real tokens. An empty row gets
// masked pad tokens only (L ≥ 1).
func PadRows(rows [][]int, multiple, maxLen, pad int) (ids, mask *tensors.Tensor) {
	multiple = max(multiple, 1)
	longest := 1
	for _, r := range rows {
		longest = max(longest, len(r))
	}
	l := min((longest+multiple-1)/multiple*multiple, max(maxLen, longest))
	idv := make([]int32, len(rows)*l)
	mv := make([]float32, len(rows)*l)
	for i, r := range rows {
		for j := 0; j < l; j++ {
			if j < len(r) {
				idv[i*l+j], mv[i*l+j] = int32(r[j]), 1
			} else {
				idv[i*l+j] = int32(pad)
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(idv, len(rows), l), tensors.FromFlatDataAndDimensions(mv, len(rows), l)
}
