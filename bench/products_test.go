package bench

import (
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
)

// BenchmarkBertProducts times each matrix product of a bert-base-4l step on its own (GoMLX, the
// configured backend), reporting GFLOP/s; bench/torch_products.py times the same products in
// PyTorch. Each iteration also sums the output (a small reduction), so the product is not dead code.
//
//	go test ./bench -run '^$' -bench BertProducts -benchtime 20x
//	/usr/bin/python3 bench/torch_products.py
func BenchmarkBertProducts(b *testing.B) {
	be, err := backend.Get()
	if err != nil {
		b.Fatal(err)
	}
	f32 := dtypes.Float32
	cases := []struct {
		name     string
		lhs, rhs []int
		lc, rc   int // contracting axes
		batch    bool
		flop     float64
	}{
		{"xWt_1024x768x768", []int{1024, 768}, []int{768, 768}, 1, 1, false, 2 * 1024 * 768 * 768},
		{"dyW_1024x768x768", []int{1024, 768}, []int{768, 768}, 1, 0, false, 2 * 1024 * 768 * 768},
		{"xWt_1024x768x3072", []int{1024, 768}, []int{3072, 768}, 1, 1, false, 2 * 1024 * 768 * 3072},
		{"dyW_1024x3072x768", []int{1024, 3072}, []int{3072, 768}, 1, 0, false, 2 * 1024 * 768 * 3072},
		{"xWt_1024x3072x768", []int{1024, 3072}, []int{768, 3072}, 1, 1, false, 2 * 1024 * 768 * 3072},
		{"dyW_1024x768x3072", []int{1024, 768}, []int{768, 3072}, 1, 0, false, 2 * 1024 * 768 * 3072},
		{"qKt_96x128x64x128", []int{96, 128, 64}, []int{96, 128, 64}, 2, 2, true, 2 * 96 * 128 * 128 * 64},
		{"pV_96x128x128x64", []int{96, 128, 128}, []int{96, 128, 64}, 2, 1, true, 2 * 96 * 128 * 128 * 64},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			exec, err := NewExec(be, func(x, y *Node) *Node {
				var batch []int
				if c.batch {
					batch = []int{0}
				}
				return ReduceAllSum(Dot(x, y).General([]int{c.lc}, batch, []int{c.rc}, batch))
			})
			if err != nil {
				b.Fatal(err)
			}
			x := tensors.FromShape(shapes.Make(f32, c.lhs...))
			y := tensors.FromShape(shapes.Make(f32, c.rhs...))
			if _, err := exec.Exec(x, y); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := exec.Exec(x, y); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(c.flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
