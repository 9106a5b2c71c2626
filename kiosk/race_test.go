//go:build race

package kiosk_test

// raceScale is how much the race detector multiplies memory and time: its documentation
// gives 5–10× memory and 2–20× execution time. Bounds measured under -race are scaled by
// it; the unscaled bounds are what the README states.
const raceScale = 10
