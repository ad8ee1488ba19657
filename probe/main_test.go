package probe_test

import (
	"os"
	"testing"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// mockExe is the mock backend built for this test binary.
var mockExe string

// TestMain builds the mock backend, and checks at the end that no mock
// is left running and no goroutine leaked.
func TestMain(m *testing.M) { os.Exit(mocktest.Main(m, &mockExe)) }
