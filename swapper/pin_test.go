package swapper

import (
	"slices"
	"testing"

	"github.com/hotswap/hotswap/probe"
)

// TestPinEnv: the variable that pins a backend to the GPU hotswap placed
// it on, by vendor or gpu_env, with the index the runtime sees and the
// value in its form; a variable the model's env sets is left alone.
func TestPinEnv(t *testing.T) {
	ram := probe.Device{Index: ramDevice, Name: "ram"}
	// gpu0 NVIDIA, gpu1 AMD, gpu2 Intel, gpu3 AMD (an APU), gpu4 NVIDIA.
	mixed := []probe.Device{ram,
		{Index: 0, Vendor: probe.VendorNVIDIA}, {Index: 1, Vendor: probe.VendorAMD},
		{Index: 2, Vendor: probe.VendorIntel}, {Index: 3, VendorIndex: 1, Vendor: probe.VendorAMD, Unified: true},
		{Index: 4, VendorIndex: 1, Vendor: probe.VendorNVIDIA}}
	cases := []struct {
		name   string
		devs   []probe.Device
		gpu    int
		gpuEnv string
		env    []string
		want   []string
	}{
		{"NVIDIA: CUDA's index, in NVML's order", mixed, 4, "", nil,
			[]string{"CUDA_VISIBLE_DEVICES=1", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}},
		{"AMD: HIP's index among the AMD GPUs", mixed, 3, "", nil, []string{"HIP_VISIBLE_DEVICES=1"}},
		{"the first AMD GPU is HIP's 0", mixed, 1, "", nil, []string{"HIP_VISIBLE_DEVICES=0"}},
		{"Intel: SYCL's selector", mixed, 2, "", nil, []string{"ONEAPI_DEVICE_SELECTOR=level_zero:0"}},
		{"gpu_env ROCR_VISIBLE_DEVICES", mixed, 3, "ROCR_VISIBLE_DEVICES", nil, []string{"ROCR_VISIBLE_DEVICES=1"}},
		{"gpu_env ZE_AFFINITY_MASK", mixed, 2, "ZE_AFFINITY_MASK", nil, []string{"ZE_AFFINITY_MASK=0"}},
		{"gpu_env Vulkan: the index among all GPUs", mixed, 3, "GGML_VK_VISIBLE_DEVICES", nil, []string{"GGML_VK_VISIBLE_DEVICES=3"}},
		{"gpu_env CUDA on an AMD GPU (HIP reads it too)", mixed, 3, "CUDA_VISIBLE_DEVICES", nil,
			[]string{"CUDA_VISIBLE_DEVICES=1", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}},
		{"the model's env sets the variable", mixed, 1, "", []string{"HIP_VISIBLE_DEVICES=0,1"}, nil},
		{"the model's env sets CUDA's order", mixed, 0, "", []string{"CUDA_DEVICE_ORDER=FASTEST_FIRST"},
			[]string{"CUDA_VISIBLE_DEVICES=0"}},
		{"another variable in env does not stop it", mixed, 1, "", []string{"CUDA_VISIBLE_DEVICES=0"}, []string{"HIP_VISIBLE_DEVICES=0"}},
		{"Apple: Metal has no such variable", []probe.Device{ram, {Index: 0, Vendor: probe.VendorApple, Unified: true}}, 0, "", nil, nil},
		{"the probe's vendor index, however the GPUs are listed", []probe.Device{ram,
			{Index: 0, VendorIndex: 1, Vendor: probe.VendorAMD}, {Index: 1, VendorIndex: 0, Vendor: probe.VendorAMD}}, 0, "", nil,
			[]string{"HIP_VISIBLE_DEVICES=1"}},
		{"a GPU of no said vendor is CUDA's, as before", []probe.Device{ram, {Index: 0}, {Index: 1}}, 1, "", nil,
			[]string{"CUDA_VISIBLE_DEVICES=1", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}},
		{"a GPU not in the last look: its own index", []probe.Device{ram}, 2, "", nil,
			[]string{"CUDA_VISIBLE_DEVICES=2", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pinEnv(c.devs, c.gpu, c.gpuEnv, c.env); !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
