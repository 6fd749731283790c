package service

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestReleaserAfterLongCalls(t *testing.T) {
	var freed atomic.Int32
	done := make(chan struct{}, 8)
	r := &releaser{free: func() { freed.Add(1); done <- struct{}{} }}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		took time.Duration
		at   time.Time
		want bool
	}{
		{10 * time.Millisecond, t0, false},                      // short: nothing to give back
		{2 * time.Second, t0, true},                             // long: released
		{3 * time.Second, t0.Add(time.Second), false},           // within releaseEvery of the last
		{longCall, t0.Add(releaseEvery), true},                  // the interval has passed
		{longCall - 1, t0.Add(3 * releaseEvery), false},         // short again
		{time.Minute, t0.Add(3*releaseEvery + time.Hour), true}, // long, much later
	}
	for i, s := range steps {
		if got := r.after(s.took, s.at); got != s.want {
			t.Fatalf("step %d (took %v): released %v, want %v", i, s.took, got, s.want)
		}
	}
	for range 3 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a release was reported but never ran")
		}
	}
	if n := freed.Load(); n != 3 {
		t.Fatalf("%d releases ran, want 3", n)
	}
}
