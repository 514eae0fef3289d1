package optim

import (
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// zerosLike returns a zero tensor with v's shape and dtype.
func zerosLike(v *model.Variable) *tensors.Tensor {
	return tensors.FromShape(v.Shape())
}
