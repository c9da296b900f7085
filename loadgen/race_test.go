//go:build race

package loadgen

// raceEnabled scales timing-sensitive tests down: the race detector makes
// every request several times more expensive.
const raceEnabled = true
