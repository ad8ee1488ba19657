package loadgen

import (
	"os"
	"strings"
	"testing"

	"github.com/hotswap/hotswap/bench/internal/hotswaptest"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
)

// mockExe is the mock backend, built once for this package's tests.
var mockExe string

func TestMain(m *testing.M) { os.Exit(mocktest.Main(m, &mockExe)) }

// hotswap is a hotswap that the load generator is pointed at.
type hotswap struct{ url string }

// serve runs hotswap in this process on text (a configuration in which
// MOCK is the mock backend) and memory, with its metrics and event
// stream, from which the load generator counts swaps, when withMetrics.
func serve(t *testing.T, text string, mem probe.Memory, withMetrics bool) *hotswap {
	t.Helper()
	return &hotswap{url: hotswaptest.Serve(t, strings.ReplaceAll(text, "MOCK", mockExe), mem, withMetrics).URL}
}
