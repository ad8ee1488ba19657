package process_test

import (
	"os/exec"
	"testing"

	"github.com/hotswap/hotswap/process"
)

// exitOf runs a shell snippet and returns how it ended.
func exitOf(t *testing.T, script string) error {
	t.Helper()
	err := exec.Command("sh", "-c", script).Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return err
}

func TestOutOfMemory(t *testing.T) {
	status1 := exitOf(t, "exit 1")
	killed := exitOf(t, "kill -KILL $$")
	terminated := exitOf(t, "kill -TERM $$")
	cases := []struct {
		name   string
		exit   error
		output []string
		oom    bool
	}{
		// What real backends print when memory runs out.
		{"llama.cpp CUDA", status1, []string{
			"ggml_backend_cuda_buffer_type_alloc_buffer: allocating 7000.00 MiB on device 0: cudaMalloc failed: out of memory",
			"llama_model_load: error loading model: unable to allocate CUDA0 buffer",
			"srv    load_model: failed to load model, '/models/big.gguf'",
			"srv  llama_server: exiting due to model loading error"}, true},
		{"llama.cpp CPU context", status1, []string{
			"ggml_aligned_malloc: insufficient memory (attempted to allocate 97656.25 MB)",
			"llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache",
			"srv  llama_server: exiting due to model loading error"}, true},
		{"llama.cpp under ulimit", status1, []string{"llama_init_from_model: failed to initialize the context: std::bad_alloc"}, true},
		{"llama.cpp Metal", status1, []string{"ggml_metal_buffer_type_alloc_buffer: error: failed to allocate buffer, size = 9000.00 MiB"}, true},
		{"llama.cpp Vulkan", status1, []string{"terminate called after throwing an instance of 'vk::OutOfDeviceMemoryError'"}, true},
		{"ROCm", status1, []string{"HIP error: hipErrorOutOfMemory"}, true},
		{"PyTorch", status1, []string{"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."}, true},
		{"vLLM cache", status1, []string{"ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine."}, true},
		{"vLLM KV cache", status1, []string{"ValueError: To serve at least one request with the models's max seq len (32768), (4.00 GiB KV cache) is needed, which is larger than the available KV cache memory (2.10 GiB)."}, true},
		{"vLLM startup", status1, []string{"ValueError: Free memory on device (10.2/79.1 GiB) on startup is less than desired GPU memory utilization (0.9, 71.2 GiB)."}, true},
		{"ENOMEM", status1, []string{"fork: Cannot allocate memory"}, true},
		{"the OOM killer", killed, nil, true},

		// What they print for everything else.
		{"bad flag", status1, []string{"error: invalid argument: --no-such-flag"}, false},
		{"missing file", status1, []string{
			"gguf_init_from_file: failed to open GGUF file '/models/nope.gguf' (No such file or directory)",
			"srv    load_model: failed to load model, '/models/nope.gguf'",
			"srv  llama_server: exiting due to model loading error"}, false},
		{"port taken", status1, []string{"srv  start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 10000"}, false},
		{"exit 0 and nothing said", nil, nil, false},
		{"SIGTERM", terminated, nil, false},
		{"Python traceback", status1, []string{"Traceback (most recent call last):", "ModuleNotFoundError: No module named 'vllm'"}, false},
	}
	for _, c := range cases {
		if got := process.OutOfMemory(c.exit, c.output); got != c.oom {
			t.Errorf("%s: OutOfMemory = %v, want %v", c.name, got, c.oom)
		}
	}
}

func TestDescribeExit(t *testing.T) {
	for _, c := range []struct {
		exit error
		want string
	}{
		{nil, "exit status 0"},
		{exitOf(t, "exit 3"), "exit status 3"},
		{exitOf(t, "kill -KILL $$"), "killed by signal 9 (killed)"},
	} {
		if got := process.DescribeExit(c.exit); got != c.want {
			t.Errorf("DescribeExit(%v) = %q, want %q", c.exit, got, c.want)
		}
	}
}
