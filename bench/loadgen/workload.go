package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// Request kinds: what a model is sent, which follows what the endpoint
// says the model is (/v1/models' kind, which hotswap reports).
const (
	kindChat      = "chat"
	kindEmbedding = "embedding"
)

// model is one model of the workload, resolved: what it is sent.
type model struct {
	Weighted
	kind string // kindChat or kindEmbedding
}

// workload is the seeded sequence of requests a run sends. It is the same
// for every target, so that targets are compared on equal work.
type workload struct {
	models []model
	cum    []float64 // cumulative weights, for drawing
	seed   uint64
	mix    bool
}

func newWorkload(models []model, seed uint64, mix bool) *workload {
	w := &workload{models: models, seed: seed, mix: mix}
	total := 0.0
	for _, m := range models {
		total += m.Weight
		w.cum = append(w.cum, total)
	}
	return w
}

// Streams of the seed, one per use, so that changing one use (more users,
// a longer run) leaves the others' draws as they were.
const (
	streamUsers    = 1 << 62
	streamArrivals = 1 << 63
)

func (w *workload) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(w.seed, stream))
}

func (w *workload) draw(r *rand.Rand) int {
	x := r.Float64() * w.cum[len(w.cum)-1]
	return min(sort.SearchFloat64s(w.cum, x), len(w.cum)-1)
}

// forRequest is the model of the k-th request of a run, for an open loop
// or a closed loop with -mix.
func (w *workload) forRequest(k int) int { return w.draw(w.rng(uint64(k))) }

// forUsers gives each of n closed-loop users the model it keeps to: the
// users are shared out by the weights (largest remainder), then dealt in
// a seeded order, so that a model with a fifth of the weight gets a fifth
// of the users rather than whatever n coin tosses give.
func (w *workload) forUsers(n int) []int {
	total := w.cum[len(w.cum)-1]
	counts := make([]int, len(w.models))
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(w.models))
	given := 0
	for i, m := range w.models {
		exact := float64(n) * m.Weight / total
		counts[i] = int(math.Floor(exact))
		given += counts[i]
		rems[i] = rem{i, exact - float64(counts[i])}
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return 0
	})
	for j := 0; given < n; j++ {
		counts[rems[j%len(rems)].i]++
		given++
	}
	users := make([]int, 0, n)
	for i, c := range counts {
		for range c {
			users = append(users, i)
		}
	}
	w.rng(streamUsers).Shuffle(len(users), func(a, b int) { users[a], users[b] = users[b], users[a] })
	return users
}

// arrivals returns the gaps between an open loop's requests: a Poisson
// process of rate a second, the same sequence for every target.
func (w *workload) arrivals(rate float64) func() float64 {
	r := w.rng(streamArrivals)
	return func() float64 { return r.ExpFloat64() / rate }
}
