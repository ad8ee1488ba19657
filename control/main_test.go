package control

import (
	"os"
	"testing"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// mockExe is the mock backend built for this test binary.
var mockExe string

func TestMain(m *testing.M) { os.Exit(mocktest.Main(m, &mockExe)) }
