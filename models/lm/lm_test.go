package lm

import (
	"fmt"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
)

func TestCausalBatch(t *testing.T) {
	ids, tg, m, err := CausalBatch([][]int{{1, 5}}, [][]int{{7, 8, 2}}, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(tensors.MustCopyFlatData[int32](ids), tensors.MustCopyFlatData[int32](tg), tensors.MustCopyFlatData[float32](m))
	// Position 1 (token 5) predicts the first completion token 7; the loss covers 7, 8, 2 only.
	want := "[1 5 7 8 2 0 0] [5 7 8 2 0 0 0] [0 1 1 1 0 0 0]"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if _, _, _, err := CausalBatch([][]int{{1, 2, 3}}, [][]int{{4, 5}}, 4, 0); err == nil {
		t.Fatal("an example longer than the length must be an error")
	}
}

func TestSampler(t *testing.T) {
	logits := []float32{0.1, 2, 1.9, -1, 0}
	if NewSampler(SampleOptions{}).Next(logits) != 1 {
		t.Fatal("greedy must pick the argmax")
	}
	s := NewSampler(SampleOptions{Temperature: 1, TopK: 2, Seed: 1})
	seen := map[int]int{}
	for i := 0; i < 400; i++ {
		seen[s.Next(logits)]++
	}
	if len(seen) != 2 || seen[1] == 0 || seen[2] == 0 {
		t.Fatalf("top-2 sampling drew %v, want only ids 1 and 2", seen)
	}
}
