//go:build !linux

package atomicfile

// NoExchangeEnv has no effect here: there is no atomic exchange.
const NoExchangeEnv = "SINGLORA_NO_RENAME_EXCHANGE"

// Exchange is not available on this system: ReplaceDir falls back to two renames.
func Exchange(a, b string) error { return ErrNoExchange }
