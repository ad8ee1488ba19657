package swapper

import (
	"strconv"

	"github.com/hotswap/hotswap/probe"
)

// Pinning a backend to the GPU hotswap places it on: the variable its GPU
// runtime reads, chosen by the GPU's vendor unless the model's gpu_env
// names one, and its value in the form that runtime wants.
//
//	vendor   variable (default)        value
//	nvidia   CUDA_VISIBLE_DEVICES      N, the GPU's index among the NVIDIA GPUs
//	         (+ CUDA_DEVICE_ORDER=PCI_BUS_ID, so that CUDA numbers them as NVML does)
//	amd      HIP_VISIBLE_DEVICES       N, among the AMD GPUs
//	intel    ONEAPI_DEVICE_SELECTOR    level_zero:N, among the Intel GPUs
//	apple    none (Metal has the one GPU)
//
// gpu_env may name instead ROCR_VISIBLE_DEVICES or ZE_AFFINITY_MASK (N,
// among the GPUs of the device's vendor), or GGML_VK_VISIBLE_DEVICES (N,
// the GPU's index among all GPUs: Vulkan lists every vendor's).
//
// The index is the one the runtime sees, the probe's Device.VendorIndex:
// each vendor's runtime numbers its own GPUs only, so on a machine with an
// NVIDIA GPU (gpu0) and an AMD one (gpu1), gpu1 is HIP's device 0. It
// assumes each runtime orders its GPUs as the probe does (NVML's order;
// the kernel's DRM card order, which is PCI probe order); where one does
// not, pin the model with gpu and set the variable in its env.

// The variables, as config.GPUEnvs names them.
const (
	envCUDA   = "CUDA_VISIBLE_DEVICES"
	envHIP    = "HIP_VISIBLE_DEVICES"
	envROCR   = "ROCR_VISIBLE_DEVICES"
	envVulkan = "GGML_VK_VISIBLE_DEVICES"
	envOneAPI = "ONEAPI_DEVICE_SELECTOR"
	envZE     = "ZE_AFFINITY_MASK"
	// envCUDAOrder makes CUDA number GPUs by PCI bus, as NVML does; by
	// default it puts the fastest first, and CUDA_VISIBLE_DEVICES=1 could
	// then be another GPU than NVML's gpu1.
	envCUDAOrder = "CUDA_DEVICE_ORDER"
)

// vendorEnv is the variable each vendor's runtime reads by default.
var vendorEnv = map[string]string{
	probe.VendorNVIDIA: envCUDA,
	probe.VendorAMD:    envHIP,
	probe.VendorIntel:  envOneAPI,
	probe.VendorApple:  "",
	"":                 envCUDA, // a GPU whose vendor the probe did not say: NVML's, as before vendors were read
}

// pinEnv returns the KEY=VALUE entries that show a backend GPU gpu alone,
// given the devices (as the probe lists them), the model's gpu_env ("":
// by vendor) and the environment the model sets itself, whose variables
// are never overridden. None for an Apple GPU without gpu_env.
func pinEnv(devs []probe.Device, gpu int, gpuEnv string, env []string) []string {
	var dev probe.Device
	found := false
	for _, d := range devs {
		if d.Index == gpu {
			dev, found = d, true
		}
	}
	if !found {
		// Not in the last look (gone since?): its own index, in CUDA's
		// variable, as before vendors were read.
		dev = probe.Device{Index: gpu}
	}
	key := gpuEnv
	if key == "" {
		var ok bool
		if key, ok = vendorEnv[dev.Vendor]; !ok {
			key = envCUDA // a vendor this table does not know: CUDA's is the one most runtimes honour
		}
	}
	if key == "" || hasEnv(env, key) {
		return nil
	}
	n := dev.VendorIndex
	switch {
	case !found:
		n = gpu
	case key == envVulkan:
		n = gpuPosition(devs, dev)
	case dev.Vendor == "":
		n = vendorIndex(devs, dev)
	}
	value := strconv.Itoa(n)
	if key == envOneAPI {
		value = "level_zero:" + value
	}
	out := []string{key + "=" + value}
	if key == envCUDA && !hasEnv(env, envCUDAOrder) {
		out = append(out, envCUDAOrder+"=PCI_BUS_ID")
	}
	return out
}

// vendorIndex is the index of dev, a GPU whose vendor the probe did not
// say (and so no VendorIndex either), among such GPUs and NVIDIA's, in the
// probe's order: CUDA's, as before vendors were read.
func vendorIndex(devs []probe.Device, dev probe.Device) int {
	vendor := func(d probe.Device) string {
		if d.Vendor == "" {
			return probe.VendorNVIDIA
		}
		return d.Vendor
	}
	n := 0
	for _, d := range devs {
		if d.Index == dev.Index {
			return n
		}
		if d.Index != ramDevice && vendor(d) == vendor(dev) {
			n++
		}
	}
	return n
}

// gpuPosition is dev's index among all GPUs, in the probe's order.
func gpuPosition(devs []probe.Device, dev probe.Device) int {
	n := 0
	for _, d := range devs {
		if d.Index == dev.Index {
			return n
		}
		if d.Index != ramDevice {
			n++
		}
	}
	return n
}
