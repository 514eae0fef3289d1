package peft

import (
	"github.com/singlora/singlora/peft/dora"
	"github.com/singlora/singlora/peft/lora"
	"github.com/singlora/singlora/peft/singlora"
	"github.com/singlora/singlora/peft/tuner"
)

// methods are the adapter methods peft offers, in the order they are listed (--method help,
// errors). Adding a method is a package implementing tuner.Tuner plus one line here.
var methods = []tuner.Tuner{
	singlora.Tuner,
	lora.Tuner,
	lora.PlusTuner,
	dora.Tuner,
	tuner.Full,
	tuner.Frozen,
}

func init() {
	for _, t := range methods {
		if err := tuner.Register(t); err != nil {
			panic(err) // two entries above with one name: a programming error every test catches
		}
	}
}
