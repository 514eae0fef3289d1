package data

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// LabelSet returns the distinct labels of examples, sorted: numerically when every label is a
// number (so "2" comes before "10"), else by byte order. The result depends only on the set of
// labels, not on the order of the examples.
func LabelSet(examples []Example) []string {
	seen := map[string]bool{}
	var labels []string
	for _, ex := range examples {
		if !seen[ex.Label] {
			seen[ex.Label] = true
			labels = append(labels, ex.Label)
		}
	}
	SortLabels(labels)
	return labels
}

// SortLabels sorts labels in place the way LabelSet does.
func SortLabels(labels []string) {
	nums := make([]float64, len(labels))
	numeric := true
	for i, l := range labels {
		v, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
		if err != nil || math.IsNaN(v) {
			numeric = false
			break
		}
		nums[i] = v
	}
	if !numeric {
		sort.Strings(labels)
		return
	}
	idx := make([]int, len(labels))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if nums[idx[a]] != nums[idx[b]] {
			return nums[idx[a]] < nums[idx[b]]
		}
		return labels[idx[a]] < labels[idx[b]] // "1" and "1.0": byte order
	})
	sorted := make([]string, len(labels))
	for i, j := range idx {
		sorted[i] = labels[j]
	}
	copy(labels, sorted)
}

// EncodeLabels maps each example's label to its index in labels. A label that is not in labels
// is an error naming the example's file and line and the known labels; so is a duplicate in
// labels.
func EncodeLabels(examples []Example, labels []string) ([]int, error) {
	ids := make(map[string]int, len(labels))
	for i, l := range labels {
		if _, dup := ids[l]; dup {
			return nil, fmt.Errorf("label set lists %q twice", l)
		}
		ids[l] = i
	}
	out := make([]int, len(examples))
	for i, ex := range examples {
		id, ok := ids[ex.Label]
		if !ok {
			return nil, &Error{File: ex.File, Line: ex.Line,
				Msg: fmt.Sprintf("label %q is not in the label set [%s]", ex.Label, quoteList(labels))}
		}
		out[i] = id
	}
	return out, nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}
