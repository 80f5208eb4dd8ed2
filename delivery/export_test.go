package delivery

import "time"

// SetAfterCancel shortens the wait for deliveries that ignore cancellation; it returns
// a function restoring the old value.
func SetAfterCancel(d time.Duration) func() {
	old := afterCancel
	afterCancel = d
	return func() { afterCancel = old }
}
