package delivery

import "time"

// SettleMax is how many outcomes one settle transaction takes at most before it is
// written without waiting for the settle interval.
const SettleMax = settleMax

// SetSettleEvery changes how long outcomes may wait for more to join their settle
// transaction while deliveries are in flight; it returns a function restoring the old
// value. Call it before the dispatcher starts and restore it after it stopped
// (t.Cleanup(SetSettleEvery(d)) before start registers its stop).
func SetSettleEvery(d time.Duration) func() {
	old := settleEvery
	settleEvery = d
	return func() { settleEvery = old }
}
