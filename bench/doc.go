// Package bench measures hotswap end to end with real mock backends, in
// its _test files: the cost of the warm path (a request to a loaded model)
// against talking to the backend directly, a cold start, a switch between
// two models, floods, and the memory a thousand streams take. Run with
// `make bench-go`; BENCHMARKS.md records the figures. Every benchmark runs
// exactly b.N of the operations its name says (a request, a switch, a
// whole scenario run), with its setup outside the timer.
//
// Beside it, bench/loadgen is the load generator users run (`hotswap
// bench`, the program cmd/hotswap-bench), and bench/suite is `make bench`,
// a standard set of its runs. None of them is linked into hotswap.
package bench
