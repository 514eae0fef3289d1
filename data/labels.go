package data

import (
	"encoding/json"
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

// CanonicalLabel returns the class name of a label. A label whose text, spaces trimmed, is a JSON
// number names its class by the number it denotes: integers in their decimal form (-0 is 0),
// other numbers in the shortest form that reads back as the same float64 (so 1, 1.0, 1e0 and
// 1.000 are all "1", and 0.50 is "0.5"); an integer too large for int64, or a number beyond
// float64's range, keeps its text. Any other label (pos, true, 007, " x") is returned unchanged.
func CanonicalLabel(label string) string {
	c, _ := canonicalLabel(label)
	return c
}

// canonicalLabel is CanonicalLabel, also saying whether the label is a number.
func canonicalLabel(label string) (string, bool) {
	s := strings.TrimSpace(label)
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') || !json.Valid([]byte(s)) {
		return label, false // not a JSON number (json.Valid alone would accept "true", "[1]", …)
	}
	if !strings.ContainsAny(s, ".eE") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return strconv.FormatInt(n, 10), true
		}
		return s, true
	}
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil:
		return s, true
	case v == math.Trunc(v) && math.Abs(v) < 1<<63:
		return strconv.FormatInt(int64(v), 10), true
	}
	return strconv.FormatFloat(v, 'g', -1, 64), true
}

// canonicalizeLabels renames each example's label to its CanonicalLabel and returns warnings: one
// when numbers and other text are mixed, one per number spelled in several ways. Each names the
// file and line of the first example of each kind or spelling.
func canonicalizeLabels(exs []Example) []string {
	var firstNum, firstText *Example
	firstNumText := ""
	type spelling struct {
		text string
		at   *Example
	}
	spellings := map[string][]spelling{} // canonical number → its distinct spellings, first seen first
	var order []string
	for i := range exs {
		ex := &exs[i]
		c, numeric := canonicalLabel(ex.Label)
		if !numeric {
			if firstText == nil {
				firstText = ex
			}
			continue
		}
		if firstNum == nil {
			firstNum, firstNumText = ex, ex.Label
		}
		sp := spellings[c]
		if len(sp) == 0 {
			order = append(order, c)
		}
		known := false
		for _, s := range sp {
			known = known || s.text == ex.Label
		}
		if !known {
			spellings[c] = append(sp, spelling{ex.Label, &exs[i]})
		}
		ex.Label = c
	}
	at := func(ex *Example) string { return fmt.Sprintf("%s:%d", ex.File, ex.Line) }
	var warns []string
	if firstNum != nil && firstText != nil {
		warns = append(warns, fmt.Sprintf("the labels mix numbers and text, which are separate classes: %s at %s is a number, %q at %s is not (is the label column right?)",
			firstNumText, at(firstNum), firstText.Label, at(firstText)))
	}
	for _, c := range order {
		sp := spellings[c]
		if len(sp) < 2 {
			continue
		}
		parts := make([]string, len(sp))
		for i, s := range sp {
			parts[i] = fmt.Sprintf("%s at %s", s.text, at(s.at))
		}
		warns = append(warns, fmt.Sprintf("labels %s are the same number and one class, %q", strings.Join(parts, ", "), c))
	}
	return warns
}
