// Package config reads hotswap's YAML configuration and turns it into typed,
// validated values. Other packages take these values and never see YAML.
//
// Validation is strict on purpose: an unknown key, a bad size or a duplicate
// alias is an error rather than something silently ignored, and Parse reports
// every problem it finds at once so that a broken file is fixed in one pass.
package config

import (
	"strings"
	"time"
)

// Defaults for every setting the file may leave out. They are exported so that
// callers that build a Config by hand (tests, mostly) agree with Parse.
const (
	DefaultListen        = "127.0.0.1:8080"
	DefaultLogLevel      = "info"
	DefaultMaxBody       = 64 << 20
	DefaultFirstPort     = 10000
	DefaultLastPort      = 10999
	DefaultHealthTimeout = 120 * time.Second
	DefaultStopTimeout   = 10 * time.Second
	// DefaultUpstreamKeepalive is below the idle timeouts of the common
	// backends (llama-server's and uvicorn's, under vLLM, are 5s), so that
	// hotswap lets go of an idle connection before the backend drops it.
	DefaultUpstreamKeepalive = 3 * time.Second

	DefaultReserveRAM  = 1 << 30
	DefaultReserveVRAM = 512 << 20
	DefaultCooldownMax = 10 * time.Second

	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyMinRate   = 64 << 10
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultStallTimeout  = time.Minute
	DefaultShutdownGrace = 10 * time.Second
	// DefaultBodyMemory bounds the request bodies held at once; a
	// max_body above half of it raises it (see Server.BodyMemory).
	DefaultBodyMemory = 256 << 20
	DefaultSessionTTL = 24 * time.Hour

	DefaultPolicy       = PolicyBatch
	DefaultMaxWait      = 30 * time.Second
	DefaultDrainTimeout = 5 * time.Minute
	DefaultIdleGrace    = 100 * time.Millisecond
	DefaultQueueSize    = 256
	DefaultQueueTimeout = 5 * time.Minute
	DefaultKeepalive    = 2 * time.Second

	DefaultProxy    = "http://127.0.0.1:${PORT}"
	DefaultHealth   = "/health"
	DefaultKind     = "llm"
	DefaultParallel = 1
	NoGPU           = -1 // Model.GPU when the model is not pinned to a device
)

// How a drained backend is stopped (Model.StopSignal).
const (
	StopTerm = "term" // SIGTERM, SIGKILL after stop_timeout
	StopKill = "kill" // SIGKILL at once
)

// Scheduling policies (Scheduling.Policy).
const (
	// PolicyBatch keeps serving the loaded models and swaps only when a
	// request for another model has waited MaxWait or nothing else is queued.
	PolicyBatch = "batch"
	// PolicyFIFO serves the oldest request first, swapping whenever needed.
	PolicyFIFO = "fifo"
)

// Eviction policies (Scheduling.Eviction): which idle models leave to make
// room. Both stop busy models only when idle ones are not enough.
const (
	// EvictLRU stops the least recently used.
	EvictLRU = "lru"
	// EvictCost stops the cheapest to bring back, weighing each model's
	// learned start time by how often it is asked for, per byte it frees.
	EvictCost = "cost"
)

// What a streamed chat completion that waits for its model is shown
// (Scheduling.LoadProgress, Model.LoadProgress).
const (
	// LoadProgressOff sends SSE comments only, which no chat UI shows.
	LoadProgressOff = "off"
	// LoadProgressReasoning says what the request waits for as the
	// answer's reasoning (delta.reasoning_content).
	LoadProgressReasoning = "reasoning"
	// LoadProgressContent says it as the answer's text (delta.content),
	// set apart from the answer that follows.
	LoadProgressContent = "content"
)

// Config is the validated, typed configuration.
type Config struct {
	// Listen is the address the proxy listens on (host:port).
	Listen string
	// LogLevel is one of debug, info, warn, error.
	LogLevel string
	// APIKeys are the accepted Bearer keys on /v1 and /upstream; empty
	// means no authentication.
	APIKeys []string
	// AdminKeys are the accepted Bearer keys on /admin, /metrics and
	// /ui; empty means APIKeys.
	AdminKeys []string
	// CORSOrigins are the browser origins allowed to call /v1 (answering
	// OPTIONS preflights); "*" allows any. Empty means none.
	CORSOrigins []string
	// AllowedHosts are the names, besides loopback names, IP addresses,
	// the listen address's host and the machine's own name, that a
	// request's Host may give: a page that rebinds its own name to this
	// machine gets refused. "*" allows any; "*.example.com" any name
	// under example.com. Lower case.
	AllowedHosts []string
	// MaxBody is the largest request body accepted, in bytes.
	MaxBody int64
	// Ports is the range ${PORT} is drawn from.
	Ports PortRange
	// HealthTimeout is how long a backend may take to become ready, unless
	// its model says otherwise.
	HealthTimeout time.Duration
	// StopTimeout is how long a backend has between SIGTERM and SIGKILL,
	// unless its model says otherwise.
	StopTimeout time.Duration
	// UpstreamKeepalive is how long an idle connection to a backend is
	// kept for the next request, unless its model says otherwise.
	UpstreamKeepalive time.Duration

	Server     Server
	Memory     Memory
	Scheduling Scheduling
	// EndpointPicker is how an endpoint picker (llm-d's EPP) in front of
	// several hotswap hosts reads this one's GET /metrics/endpoint.
	EndpointPicker EndpointPicker

	// Models holds every model, keyed by model id (not by alias).
	Models map[string]*Model
	// ModelIDs lists the model ids in the order the file lists them, so
	// that listings and preloads are stable.
	ModelIDs []string
	// Modes maps a mode name to the ids of its models. Aliases used in the
	// file are already resolved to ids, and each id appears once.
	Modes map[string][]string

	// names maps each alias and variant id to what it stands for. Parse
	// fills it; a Config built by hand leaves it nil and Lookup falls back
	// to a scan.
	names map[string]target
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ First, Last int }

// Server holds the limits of hotswap's HTTP front: how many connections it
// takes and how long a client may take, so that no client can take it down
// or hold a model hostage.
type Server struct {
	// MaxConns is the most client connections open at once; more are
	// refused. 0 lets hotswap choose from its open-file limit.
	MaxConns int
	// MaxConnsPerIP is the most open from one address; 0 is half of
	// MaxConns.
	MaxConnsPerIP int
	// HeaderTimeout bounds the wait for a request's line and headers.
	HeaderTimeout time.Duration
	// BodyMinRate is the slowest a request body may arrive, in bytes a
	// second: the body must be in within HeaderTimeout plus its size at
	// this rate (max_body for a body of unknown size).
	BodyMinRate int64
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// StallTimeout drops a client that has accepted no byte of its answer
	// for this long; 0 never does.
	StallTimeout time.Duration
	// ShutdownGrace is how long answers in flight may run on once hotswap
	// is told to stop.
	ShutdownGrace time.Duration
	// BodyMemory bounds the bytes of request bodies held at once, over
	// all connections; a body that would pass it is refused (503) before
	// it is read. Never less than MaxBody.
	BodyMemory int64
	// SessionTTL is how long the status page's sign-in lasts.
	SessionTTL time.Duration
}

// Memory holds the memory planning settings.
type Memory struct {
	// ReserveRAM is always left free for the OS and other programs.
	ReserveRAM int64
	// ReserveVRAM is left free on each GPU.
	ReserveVRAM int64
	// LimitRAM, when > 0, caps the RAM all backends together may use.
	LimitRAM int64
	// CooldownMax bounds the wait for freed memory to show up after an
	// eviction; 0 means don't wait.
	CooldownMax time.Duration
	// StateFile is where learned footprints are kept; "" lets the caller
	// choose (the user's state directory).
	StateFile string
}

// EndpointPicker holds what an endpoint picker in front of several
// hotswap hosts needs of this one. GET /metrics/endpoint is always served
// on the main listener, under the keys of /metrics; a picker's scraper
// cannot send a key, so reading it without one is an opt-in.
type EndpointPicker struct {
	// Open serves /metrics/endpoint on the main listener without a key,
	// whatever keys are configured (what it shows is which models are
	// loaded, queue lengths and memory in use).
	Open bool
	// Listen, when set, is an address (host:port) of a listener of its
	// own that serves /metrics/endpoint, and nothing else, without a key:
	// bind it where only the picker reaches (a cluster-internal address).
	Listen string
	// Leave is how long hotswap, told to stop, serves on while saying on
	// /metrics/endpoint that it is leaving, so that the picker sends
	// nothing new before it closes its listener; 0 stops at once.
	Leave time.Duration
}

// Scheduling holds the router's settings.
type Scheduling struct {
	// Policy is PolicyBatch or PolicyFIFO.
	Policy string
	// MaxWait is, under PolicyBatch, the longest a request waits for a swap
	// while other models are being served. 0 swaps as soon as asked.
	MaxWait time.Duration
	// IdleGrace is how long after its last request a model still counts
	// as busy: clients in step leave it idle for a moment between requests.
	IdleGrace time.Duration
	// DrainTimeout bounds how long a model that must leave (to make room,
	// for its ttl) lets its requests in flight finish; past it they are cut.
	DrainTimeout time.Duration
	// QueueSize is the number of requests each model's queue holds.
	QueueSize int
	// QueueTimeout is how long a request may wait in a queue.
	QueueTimeout time.Duration
	// StreamKeepalive is how often a streaming request that waits (queued,
	// or for its model to load) is sent an SSE comment saying why; 0 is off.
	StreamKeepalive time.Duration
	// LoadProgress is the models' default for Model.LoadProgress: off,
	// reasoning or content.
	LoadProgress string
	// Eviction is EvictLRU or EvictCost.
	Eviction string
}

// Need is an amount of memory, in bytes.
type Need struct{ RAM, VRAM int64 }

// Model is one backend that hotswap can start and stop.
type Model struct {
	// ID is the name clients use, and the key in Config.Models.
	ID string
	// Cmd is the backend's argv. It was split like a POSIX shell would
	// split it but is never run through a shell; ${PORT} and ${MODEL} are
	// not yet expanded (see Expand).
	Cmd []string
	// Proxy is the upstream base URL template, by default
	// "http://127.0.0.1:${PORT}".
	Proxy string
	// Health is the path polled for readiness; it starts with "/".
	Health string
	// Aliases are other names clients may use for this model.
	Aliases []string
	// Env holds extra KEY=VALUE entries for the backend's environment.
	Env []string
	// Kind is llm, embedding, stt, tts or image. It is informational.
	Kind string
	// Memory is the declared need; the swapper may raise it to what it
	// measured in earlier runs.
	Memory Need
	// GPU pins the model to a device when >= 0; NoGPU lets the swapper place it.
	GPU int
	// Parallel is how many requests may be sent to the backend at once.
	Parallel int
	// TTL unloads the model after this long idle; 0 means never.
	TTL time.Duration
	// Pinned models are never evicted.
	Pinned bool
	// Preload models are started with hotswap.
	Preload bool
	// HealthTimeout, StopTimeout and UpstreamKeepalive are this model's
	// values, defaulted to the Config's. An UpstreamKeepalive of 0 means a
	// new connection for every request.
	HealthTimeout     time.Duration
	StopTimeout       time.Duration
	UpstreamKeepalive time.Duration
	// Headers are set on every request forwarded to the backend (its own
	// API key, say), replacing what the client sent under those names.
	// Their values may come from hotswap's environment (${env:NAME}), so
	// that secrets stay out of the file; they are never logged.
	Headers []Header

	// StopSignal is how the backend is stopped once drained: StopTerm
	// (SIGTERM, SIGKILL after StopTimeout; "" means it too) or StopKill
	// (SIGKILL at once, for a backend with nothing to save that takes its
	// time to exit). Stop, when set, wins.
	StopSignal string

	// Stop, when set, is the command that stops the backend in place of
	// SIGTERM (docker stop hs-${MODEL}): an argv template like Cmd, with
	// ${PID} (the backend's pid), ${PORT} and ${MODEL}. LogStop is it as
	// logs show it (see LogCmd).
	Stop, LogStop []string
	// Cgroup, when set, is the cgroup (v2) directory whose memory is the
	// backend's, for a backend that runs outside hotswap's process tree (in
	// a container): a path under /sys/fs/cgroup, or relative to it, with
	// ${MODEL}.
	Cgroup string
	// GPUEnv is the variable that pins the backend to the GPU hotswap
	// places it on (one of GPUEnvs); "" chooses by the GPU's vendor.
	GPUEnv string

	// LogCmd is Cmd as logs show it: what came from hotswap's environment
	// (${env:NAME}) is left as that reference, so that a key passed on the
	// command line stays out of the log.
	LogCmd []string
	// UpstreamModel, when set, is the model name the backend is sent in
	// place of the one the client asked for (vLLM's --served-model-name);
	// answers carry the client's name back.
	UpstreamModel string
	// Params shape the JSON bodies of requests that name the model (or
	// one of its aliases).
	Params Params
	// Variants are other names served by this model's backend, each with
	// parameters of its own, in the file's order.
	Variants []*Variant
	// Unlisted models are served but left out of /v1/models.
	Unlisted bool
	Info     Info
	// LoadProgress is what a streamed chat completion that waits for the
	// model is sent as it waits, besides comments: LoadProgressOff,
	// LoadProgressReasoning or LoadProgressContent; the file-wide
	// scheduling.load_progress unless the model sets its own.
	LoadProgress string
	// Files are the model's weight files (paths or globs), read into the
	// page cache ahead of a start that waits; empty means they are found
	// in Cmd (see package readahead).
	Files []string
	// NoReadAhead turns the read-ahead off for this model (read_ahead:
	// false): its files are left for the backend to read when it starts,
	// as if none were found.
	NoReadAhead bool
	// Sleep, when set, says how the backend is put to sleep and woken
	// (vLLM's sleep mode): a model that must make room may then sleep,
	// keeping its process, rather than stop.
	Sleep *Sleep
}

// Sleep is how a backend that can sleep is put to sleep and woken.
type Sleep struct {
	// Sleep and Wake are the calls that put it to sleep and wake it. Each
	// is done once it has answered.
	Sleep, Wake Action
	// Memory is what the backend holds while asleep, as declared; zero
	// means undeclared (see the swapper's asleepNeed). A measured figure
	// raises it, as for Model.Memory.
	Memory Need
	// Timeout bounds one sleep or one wake.
	Timeout time.Duration
}

// Action is a call made to a running backend: an HTTP request to it
// (Method and Path, on its proxy URL), or a command (Argv, with ${PID},
// ${PORT} and ${MODEL}; LogArgv is it as logs show it, see LogCmd).
type Action struct {
	Method, Path  string
	Argv, LogArgv []string
}

// String is the action as logs and errors show it.
func (a Action) String() string {
	if a.Method != "" {
		return a.Method + " " + a.Path
	}
	return strings.Join(a.LogArgv, " ")
}

// SleepVLLM is the `sleep:` preset for vLLM (started with
// --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1): level 1 offloads the
// weights to CPU memory and frees the GPU's; a wake brings them back.
const SleepVLLM = "vllm"

// DefaultSleepTimeout bounds one sleep or wake unless the model says.
const DefaultSleepTimeout = 2 * time.Minute

// Header is one header a model sets on the requests sent to its backend.
type Header struct{ Name, Value string }

// Default returns a Config with every default applied and no models.
func Default() *Config {
	return &Config{
		Listen:            DefaultListen,
		LogLevel:          DefaultLogLevel,
		MaxBody:           DefaultMaxBody,
		Ports:             PortRange{First: DefaultFirstPort, Last: DefaultLastPort},
		HealthTimeout:     DefaultHealthTimeout,
		StopTimeout:       DefaultStopTimeout,
		UpstreamKeepalive: DefaultUpstreamKeepalive,
		Server: Server{
			HeaderTimeout: DefaultHeaderTimeout,
			BodyMinRate:   DefaultBodyMinRate,
			IdleTimeout:   DefaultIdleTimeout,
			StallTimeout:  DefaultStallTimeout,
			ShutdownGrace: DefaultShutdownGrace,
			BodyMemory:    DefaultBodyMemory,
			SessionTTL:    DefaultSessionTTL,
		},
		Memory: Memory{
			ReserveRAM:  DefaultReserveRAM,
			ReserveVRAM: DefaultReserveVRAM,
			CooldownMax: DefaultCooldownMax,
		},
		Scheduling: Scheduling{
			Policy:          DefaultPolicy,
			Eviction:        EvictCost,
			MaxWait:         DefaultMaxWait,
			IdleGrace:       DefaultIdleGrace,
			DrainTimeout:    DefaultDrainTimeout,
			QueueSize:       DefaultQueueSize,
			QueueTimeout:    DefaultQueueTimeout,
			StreamKeepalive: DefaultKeepalive,
			LoadProgress:    LoadProgressOff,
		},
		Models: make(map[string]*Model),
		Modes:  make(map[string][]string),
	}
}

// Resolve maps a model id, a variant id or an alias of either to the model
// that serves it.
func (c *Config) Resolve(name string) (*Model, bool) {
	m, _, ok := c.Lookup(name)
	return m, ok
}

// GPUEnvs are the variables a backend's GPU runtime reads to see only some
// devices: CUDA's, ROCm's (HIP and the runtime below it), Vulkan's in
// llama.cpp (ggml), and oneAPI's (SYCL's selector and Level Zero's mask).
var GPUEnvs = []string{"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
	"GGML_VK_VISIBLE_DEVICES", "ONEAPI_DEVICE_SELECTOR", "ZE_AFFINITY_MASK"}
