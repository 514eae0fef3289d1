// Package varnames owns the naming conventions that sort a model store's variables by role:
// which are the optimizer's state, which are GoMLX's internal bookkeeping (the RNG state), and
// which belong to normalisation layers. Every package that treats store variables by role
// (trainability, checkpoints, adapter saving, parameter counts, weight decay) asks here, so each
// convention has one definition.
//
// Store paths are absolute: "/" followed by scope names and the variable name, separated by "/"
// (e.g. "/encoder/layer/0/attention/self/query/weight").
package varnames

import "strings"

// OptimizerPrefix begins the path of every variable the optimizer and the trainer keep: AdamW's
// moments (optim.StatePrefix, "/optim/adamw/…"), the optimizer-step counter (optim.StepPath,
// "/optim/step") and the gradient accumulators ("/optim/accum/…").
const OptimizerPrefix = "/optim/"

// IsOptimizerState reports whether path is a variable of the optimizer or the trainer (its path
// begins with OptimizerPrefix). Such variables are never trainable and are saved in checkpoints.
func IsOptimizerState(path string) bool { return strings.HasPrefix(path, OptimizerPrefix) }

// InternalMark begins the name of GoMLX's internal variables and scopes (e.g. "#rngState").
const InternalMark = "#"

// IsInternal reports whether path is a GoMLX-internal variable: its name, or the name of one of
// its scopes, begins with InternalMark ("/#rngState", "/layer/#counter").
func IsInternal(path string) bool { return strings.Contains(path, "/"+InternalMark) }

// RNGStatePath is the path of GoMLX's random-number-generator state (model.RNGStateVariableName
// in the root scope), which checkpoints keep so that dropout continues the same stream on resume.
const RNGStatePath = "/" + InternalMark + "rngState"

// IsRNGState reports whether path is GoMLX's RNG state (RNGStatePath).
func IsRNGState(path string) bool { return path == RNGStatePath }

// IsBookkeeping reports whether path is optimizer state or a GoMLX-internal variable: a variable
// that is never trained, never saved as a model or adapter weight and never counted as a
// parameter.
func IsBookkeeping(path string) bool { return IsOptimizerState(path) || IsInternal(path) }

// NormMark is the substring that marks a normalisation layer's variables in the models' paths
// ("/model/norm/weight", "/model/layers/0/input_layernorm/weight", "/h/0/ln_norm/scale"). The
// match is case-sensitive: BERT's "LayerNorm" scopes do not contain it, but their weights are
// vectors, which get no weight decay for that reason (see the optimizer groups in package peft).
const NormMark = "norm"

// IsNormalization reports whether path belongs to a normalisation layer (contains NormMark).
// Normalisation weights get no weight decay.
func IsNormalization(path string) bool { return strings.Contains(path, NormMark) }
