package sessions_test

import "time"

// waitABit pauses a polling loop.
func waitABit() { time.Sleep(5 * time.Millisecond) }
