package finetune

import (
	"strings"
	"testing"

	"github.com/singlora/singlora/peft"
)

func TestStepMemoryCheck(t *testing.T) {
	specs := []peft.LinearSpec{{Path: "a", In: 512, Out: 512}, {Path: "b", In: 512, Out: 2048}}
	// Per example: 128 positions × (2 × 3584 widths) × 4 bytes.
	if got, want := stepActivationBytes(specs, 3, 128, 0), int64(3*128*2*3584*4); got != want {
		t.Fatalf("stepActivationBytes = %d, want %d", got, want)
	}
	if got, want := stepActivationBytes(specs, 1, 16, 1000), int64(16*(2*3584+2*1000)*4); got != want {
		t.Fatalf("with a vocabulary: %d, want %d", got, want)
	}
	if _, ok := availableMemory(); !ok {
		t.Skip("no /proc/meminfo: the check is off here")
	}
	c := Default()
	c.Batch = 8
	if err := checkStepMemory(c, specs, 128, 0); err != nil {
		t.Fatalf("batch 8 refused: %v", err)
	}
	c.Batch = 100_000_000 // ~370 TB of activations
	err := checkStepMemory(c, specs, 128, 0)
	if err == nil || !strings.Contains(err.Error(), "--batch 100000000") || !strings.Contains(err.Error(), "lower --batch to at most about") {
		t.Fatalf("err = %v, want a refusal naming --batch and the size that fits", err)
	}
}
