package config

import (
	"slices"
	"strings"
	"testing"
)

// TestStopCgroupGPUEnv: a model's stop command (with ${PID}, ${PORT},
// ${MODEL}, macros and variables), cgroup and gpu_env are read; ${PID}
// stays a placeholder of stop alone.
func TestStopCgroupGPUEnv(t *testing.T) {
	t.Setenv("HS_TEST_RUNTIME", "podman")
	cfg := mustParse(t, `
macros: {engine: "${env:HS_TEST_RUNTIME}"}
models:
  vllm:
    cmd: ${engine} run --rm --name hs-${MODEL} -p ${PORT}:8000 vllm/vllm-openai
    stop: ${engine} stop -t 10 hs-${MODEL}
    cgroup: system.slice/docker-hs-${MODEL}.scope
    gpu_env: HIP_VISIBLE_DEVICES
  plain:
    cmd: srv --port ${PORT}
    stop: [kill, -INT, "${PID}"]
`)
	m := cfg.Models["vllm"]
	if !slices.Equal(m.Stop, []string{"podman", "stop", "-t", "10", "hs-${MODEL}"}) ||
		!slices.Equal(m.LogStop, []string{"${env:HS_TEST_RUNTIME}", "stop", "-t", "10", "hs-${MODEL}"}) {
		t.Errorf("stop %q, logged %q", m.Stop, m.LogStop)
	}
	if m.Cgroup != "system.slice/docker-hs-${MODEL}.scope" || m.GPUEnv != "HIP_VISIBLE_DEVICES" {
		t.Errorf("cgroup %q, gpu_env %q", m.Cgroup, m.GPUEnv)
	}
	if p := cfg.Models["plain"]; !slices.Equal(p.Stop, []string{"kill", "-INT", "${PID}"}) || p.GPUEnv != "" || p.Stop == nil {
		t.Errorf("plain: stop %q, gpu_env %q", p.Stop, p.GPUEnv)
	}

	for _, c := range []struct{ yaml, want string }{
		{"models:\n  a: {cmd: 'srv ${PID}'}\n", "models.a.cmd: unknown macro ${PID}"},
		{"models:\n  a: {cmd: srv, stop: 'kill ${SIGNAL}'}\n", "models.a.stop: unknown macro ${SIGNAL}"},
		{"models:\n  a: {cmd: srv, stop: ''}\n", "models.a.stop: must not be empty"},
		{"models:\n  a: {cmd: srv, gpu_env: CUDA_DEVICES}\n", "models.a.gpu_env"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}
