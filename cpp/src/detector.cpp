// trtbuild::Detector on standard TensorRT 10.x / 11.x: see include/trtbuild/detector.hpp. Version differences live
// in trt_compat.hpp; everything here is the API common to 10.3, 10.16 and 11.x.
#include "trtbuild/detector.hpp"

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <iostream>
#include <mutex>
#include <utility>

#include <cuda_runtime_api.h>
#ifdef TRTBUILD_HAVE_PLUGINS
#include <NvInferPlugin.h>
#endif

#include "trt_compat.hpp"
#include "trtbuild/error.hpp"

namespace trtbuild {
namespace fs = std::filesystem;

namespace {

void cudaCheck(cudaError_t status, const char* call, const std::string& what) {
  if (status != cudaSuccess) {
    throw Error(what + ": CUDA " + cudaGetErrorName(status) + " in " + call + " (" + cudaGetErrorString(status) + ")",
                ErrorKind::Runtime);
  }
}
#define TRTBUILD_CUDA(call, what) cudaCheck((call), #call, (what))

// TensorRT's log: warnings and errors to stderr; the last errors kept for the one-line error messages.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity > Severity::kWARNING) return;
    std::lock_guard<std::mutex> lock(mutex_);
    std::cerr << (severity <= Severity::kERROR ? "tensorrt error: " : "tensorrt warning: ") << msg << "\n";
    if (severity <= Severity::kERROR) last_error_ = msg;
  }
  std::string lastError() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_.empty() ? "unknown reason" : last_error_;
  }

 private:
  std::mutex mutex_;
  std::string last_error_;
};

// What every clone shares: the logger, the runtime and the deserialized engine (the weights), kept alive together.
struct Engine {
  fs::path path;
  Sidecar sidecar;
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  int device = 0;
  cudaDeviceProp prop{};
  ~Engine() {  // the engine before the runtime that made it
    engine.reset();
    runtime.reset();
  }
};

struct Buffer {
  std::string name;
  bool input = false;
  std::size_t bytes = 0;  // capacity, for the largest shape this Detector runs
  void* host = nullptr;   // pinned (or mapped) host memory
  void* device = nullptr; // device memory, or the device alias of mapped host memory
};

std::string shapeText(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<std::int64_t> toVector(const nvinfer1::Dims& d) {
  return std::vector<std::int64_t>(d.d, d.d + d.nbDims);
}

std::shared_ptr<Engine> loadEngine(const std::string& engine_path, const DetectorOptions& options) {
  auto e = std::make_shared<Engine>();
  e->path = engine_path;
  e->sidecar = loadEngineSidecar(e->path, options.verify_sha256);  // this very engine, or one line
  const Sidecar& s = e->sidecar;
  if (s.flavor == "rtx") {
    throw Error(engine_path + ": a TensorRT-RTX engine (" + s.label() + "); trtbuild::Detector runs standard "
                "TensorRT engines: build one on this GPU host with `trtbuild build MODEL.onnx --flavor tensorrt`");
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    throw Error(engine_path + ": no CUDA device found (is the NVIDIA driver loaded?); a TensorRT engine needs a GPU",
                ErrorKind::Dependency);
  }
  if (options.device < 0 || options.device >= count) {
    throw Error("device=" + std::to_string(options.device) + ": this host has " + std::to_string(count) +
                " CUDA device(s); pass 0.." + std::to_string(count - 1));
  }
  e->device = options.device;
  TRTBUILD_CUDA(cudaSetDevice(e->device), engine_path);
  TRTBUILD_CUDA(cudaGetDeviceProperties(&e->prop, e->device), engine_path);
  const std::string cc = std::to_string(e->prop.major) + "." + std::to_string(e->prop.minor);
  // refused before deserializing, as trtbuild's Python runtime does: another TensorRT or GPU, with the rebuild command
  if (auto why = engineMismatch(s, compat::libraryVersion(), e->prop.name, cc)) {
    throw Error(engine_path + ": " + *why + "; rebuild it on this host: " + rebuildCommand(e->path, s),
                ErrorKind::Runtime);
  }
  if (s.nms == "efficient") {
#ifdef TRTBUILD_HAVE_PLUGINS
    initLibNvInferPlugins(&e->logger, "");
#else
    throw Error(engine_path + ": uses the EfficientNMS_TRT plugin, but trtbuild's C++ library was built without "
                "TensorRT's plugin library (libnvinfer_plugin); rebuild it where that library is installed, or "
                "build the engine with --nms onnx");
#endif
  }
  std::ifstream in(e->path, std::ios::binary);
  std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.is_open() || blob.empty()) throw Error(engine_path + ": cannot be read; check the file and its permissions");
  e->runtime.reset(nvinfer1::createInferRuntime(e->logger));
  if (!e->runtime) throw Error(engine_path + ": TensorRT could not create a runtime", ErrorKind::Runtime);
  if (s.dla_core) e->runtime->setDLACore(*s.dla_core);
  e->engine.reset(e->runtime->deserializeCudaEngine(blob.data(), blob.size()));
  if (!e->engine) {
    throw Error(engine_path + ": TensorRT " + compat::libraryVersion() + " cannot deserialize it (" +
                e->logger.lastError() + "); rebuild it on this host: " + rebuildCommand(e->path, s),
                ErrorKind::Runtime);
  }
  // the engine's I/O must be the sidecar's: the same names, modes, static dims and float32
  for (const TensorSpec& t : s.io) {
    const auto mode = e->engine->getTensorIOMode(t.name.c_str());
    const auto want = t.input ? nvinfer1::TensorIOMode::kINPUT : nvinfer1::TensorIOMode::kOUTPUT;
    const std::vector<std::int64_t> shape = toVector(e->engine->getTensorShape(t.name.c_str()));
    if (mode != want || shape != t.shape) {
      throw Error(engine_path + ": the engine's tensor \"" + t.name + "\" is " +
                  (mode == nvinfer1::TensorIOMode::kNONE ? std::string("absent") : shapeText(shape)) +
                  " but its sidecar says " + shapeText(t.shape) + "; the sidecar belongs to another engine: " +
                  "rebuild both with `trtbuild build MODEL.onnx --force`");
    }
    const auto dtype = e->engine->getTensorDataType(t.name.c_str());
    if (dtype != nvinfer1::DataType::kFLOAT) {
      throw Error(engine_path + ": tensor \"" + t.name + "\" is " + compat::dtypeName(dtype) +
                  "; trtbuild::Detector takes engines with float32 I/O (trtbuild's FP16 and INT8 engines have it)");
    }
  }
  if (e->engine->getNbIOTensors() != static_cast<std::int32_t>(s.io.size())) {
    throw Error(engine_path + ": the engine has " + std::to_string(e->engine->getNbIOTensors()) +
                " I/O tensors but its sidecar lists " + std::to_string(s.io.size()) +
                "; rebuild both with `trtbuild build MODEL.onnx --force`");
  }
  return e;
}

}  // namespace

struct Detector::Impl {
  std::shared_ptr<Engine> engine;
  DetectorOptions options;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
  bool mapped = false;
  int batch = 1;
  bool dynamic = false;
  Buffer input;
  std::vector<Buffer> outputs;
  std::vector<std::int64_t> output_shape;  // of the first output, for the current input shape
  int shape_batch = -1;                    // the batch the context's input shape is set to
  cudaGraphExec_t graph = nullptr;
  int graph_batch = -1;
  StageTimes times;

  const Sidecar& sidecar() const { return engine->sidecar; }
  std::string what() const { return engine->path.string(); }

  void setUp() {
    const Sidecar& s = sidecar();
    const TensorSpec& in = s.input();
    TRTBUILD_CUDA(cudaSetDevice(engine->device), what());
    context.reset(compat::createContext(*engine->engine));
    if (!context) throw Error(what() + ": TensorRT could not create an execution context (" +
                              engine->logger.lastError() + ")", ErrorKind::Runtime);
    TRTBUILD_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), what());
    mapped = engine->prop.integrated != 0;  // Jetson: host memory the GPU reads directly, no copies
    if (in.shape.size() != 4) throw Error(what() + ": input \"" + in.name + "\" is not [B, 3, H, W]");
    for (auto d : in.shape) dynamic = dynamic || d < 0;  // batch and/or H, W set per call (setInputShape)
    if (in.shape[0] > 0) {
      batch = static_cast<int>(in.shape[0]);
      if (options.batch > 0 && options.batch != batch) {
        throw Error("batch=" + std::to_string(options.batch) + ": " + what() + " has a static batch of " +
                    std::to_string(batch) + "; rebuild it with `trtbuild export --dynamic` for another batch size");
      }
    } else {
      batch = options.batch > 0 ? options.batch : 1;
      auto it = s.profiles.find(in.name);
      if (it != s.profiles.end() && it->second.max.size() == 4 &&
          (batch < it->second.min[0] || batch > it->second.max[0])) {
        throw Error("batch=" + std::to_string(batch) + ": outside the profile of " + what() + " (" +
                    std::to_string(it->second.min[0]) + ".." + std::to_string(it->second.max[0]) +
                    "); rebuild it with --max-batch " + std::to_string(batch));
      }
    }
    setBatch(batch);  // the largest shape this Detector runs: buffers are sized for it, once
    if (output_shape.size() != 3) {
      throw Error(what() + ": output \"" + s.output().name + "\" is " + shapeText(output_shape) +
                  ", not [B, 4+nc, A] (raw head) or [B, K, 6] (end-to-end); pass a trtbuild YOLOv8 detect engine");
    }
    const auto floats = [](const std::vector<std::int64_t>& dims) {
      std::size_t n = 1;
      for (auto d : dims) n *= static_cast<std::size_t>(d);
      return n;
    };
    input = {in.name, true, sizeof(float) * floats({batch, 3, s.imgsz_h, s.imgsz_w}), nullptr, nullptr};
    for (const TensorSpec& t : s.io) {
      if (t.input) continue;
      const auto dims = toVector(context->getTensorShape(t.name.c_str()));
      for (auto d : dims) {
        if (d < 0) {
          throw Error(what() + ": output \"" + t.name + "\" has a data-dependent shape " + shapeText(dims) +
                      "; trtbuild::Detector needs static output shapes (trtbuild's --nms engines pad to max_det)");
        }
      }
      outputs.push_back({t.name, false, sizeof(float) * floats(dims), nullptr, nullptr});
    }
    allocate(input);
    for (Buffer& b : outputs) allocate(b);
    for (Buffer* b : all()) {  // addresses never change: set once
      if (!context->setTensorAddress(b->name.c_str(), b->device)) {
        throw Error(what() + ": TensorRT refused the address of \"" + b->name + "\" (" +
                    engine->logger.lastError() + ")", ErrorKind::Runtime);
      }
    }
  }

  std::vector<Buffer*> all() {
    std::vector<Buffer*> v{&input};
    for (Buffer& b : outputs) v.push_back(&b);
    return v;
  }

  void allocate(Buffer& b) {
    if (mapped) {
      TRTBUILD_CUDA(cudaHostAlloc(&b.host, b.bytes, cudaHostAllocMapped), what());
      TRTBUILD_CUDA(cudaHostGetDevicePointer(&b.device, b.host, 0), what());
    } else {
      TRTBUILD_CUDA(cudaHostAlloc(&b.host, b.bytes, cudaHostAllocDefault), what());
      TRTBUILD_CUDA(cudaMalloc(&b.device, b.bytes), what());
    }
  }

  void setBatch(int n) {
    if (n == shape_batch) return;
    const Sidecar& s = sidecar();
    const TensorSpec& in = s.input();
    if (!dynamic) {  // a static engine: its shapes are fixed
      output_shape = toVector(context->getTensorShape(s.output().name.c_str()));
      shape_batch = n;
      return;
    }
    nvinfer1::Dims dims;
    dims.nbDims = 4;
    dims.d[0] = n;
    dims.d[1] = 3;
    dims.d[2] = s.imgsz_h;
    dims.d[3] = s.imgsz_w;
    if (!context->setInputShape(in.name.c_str(), dims)) {
      throw Error(what() + ": TensorRT refused input shape " + shapeText({n, 3, s.imgsz_h, s.imgsz_w}) + " for \"" +
                  in.name + "\" (" + engine->logger.lastError() + ")", ErrorKind::Runtime);
    }
    output_shape = toVector(context->getTensorShape(s.output().name.c_str()));
    shape_batch = n;
  }

  // copy in → enqueueV3 → copy out, all on the stream (what a CUDA graph captures)
  void enqueue(int n) {
    const std::size_t in_bytes = input.bytes / batch * n;
    if (!mapped) TRTBUILD_CUDA(cudaMemcpyAsync(input.device, input.host, in_bytes, cudaMemcpyHostToDevice, stream),
                               what());
    if (!context->enqueueV3(stream)) {
      throw Error(what() + ": TensorRT could not enqueue the engine (" + engine->logger.lastError() + ")",
                  ErrorKind::Runtime);
    }
    if (!mapped) {
      for (Buffer& b : outputs) {
        TRTBUILD_CUDA(cudaMemcpyAsync(b.host, b.device, b.bytes / batch * n, cudaMemcpyDeviceToHost, stream), what());
      }
    }
  }

  void dropGraph() {
    if (graph) cudaGraphExecDestroy(graph);
    graph = nullptr;
    graph_batch = -1;
  }

  void run(int n) {
    if (!options.cuda_graph) {
      enqueue(n);
    } else {
      if (graph_batch != n) {
        dropGraph();
        enqueue(n);  // TensorRT's lazy set-up must happen before a capture (its documented rule)
        TRTBUILD_CUDA(cudaStreamSynchronize(stream), what());
        cudaGraph_t g = nullptr;
        TRTBUILD_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), what());
        try {
          enqueue(n);
        } catch (...) {
          cudaStreamEndCapture(stream, &g);
          if (g) cudaGraphDestroy(g);
          throw;
        }
        TRTBUILD_CUDA(cudaStreamEndCapture(stream, &g), what() + " (CUDA graph capture; run without it)");
        const cudaError_t inst = cudaGraphInstantiateWithFlags(&graph, g, 0);
        cudaGraphDestroy(g);
        TRTBUILD_CUDA(inst, what() + " (CUDA graph capture; run without it)");
        graph_batch = n;
      }
      TRTBUILD_CUDA(cudaGraphLaunch(graph, stream), what());
    }
    TRTBUILD_CUDA(cudaStreamSynchronize(stream), what());
  }

  std::vector<Detections> detectChunk(const std::vector<cv::Mat>& images, std::size_t start, std::size_t n) {
    using clock = std::chrono::steady_clock;
    const Sidecar& s = sidecar();
    const auto t0 = clock::now();
    const int run_n = sidecar().input().shape[0] < 0 ? static_cast<int>(n) : batch;  // static: its full batch
    const std::size_t slot = static_cast<std::size_t>(3) * s.imgsz_h * s.imgsz_w;
    float* host_in = static_cast<float*>(input.host);
    std::vector<LetterboxInfo> infos;
    for (std::size_t i = 0; i < n; ++i) {
      infos.push_back(letterbox(images[start + i], s.imgsz_h, s.imgsz_w, host_in + i * slot));
    }
    if (static_cast<std::size_t>(run_n) > n) {  // black images whose outputs are dropped, as trtbuild's Predictor
      std::memset(host_in + n * slot, 0, (run_n - n) * slot * sizeof(float));
    }
    const auto t1 = clock::now();
    setBatch(run_n);
    run(run_n);
    const auto t2 = clock::now();
    const float* out = static_cast<const float*>(outputs.front().host);
    const std::size_t per_image = outputs.front().bytes / sizeof(float) / batch;
    std::vector<Detections> dets;
    for (std::size_t i = 0; i < n; ++i) {
      const float* pred = out + i * per_image;
      if (s.end2end) {
        dets.push_back(decodeEnd2End(pred, static_cast<int>(output_shape[1]), static_cast<int>(output_shape[2]),
                                     infos[i], options.post));
      } else {
        dets.push_back(decodeRaw(pred, static_cast<int>(output_shape[1]), static_cast<int>(output_shape[2]),
                                 infos[i], options.post));
      }
    }
    const auto t3 = clock::now();
    const auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    times.preprocess_ms += ms(t1 - t0);
    times.infer_ms += ms(t2 - t1);
    times.postprocess_ms += ms(t3 - t2);
    times.images += static_cast<int>(n);
    return dets;
  }

  ~Impl() {
    if (engine) cudaSetDevice(engine->device);
    dropGraph();
    context.reset();
    for (Buffer* b : all()) {
      if (b->host) cudaFreeHost(b->host);
      if (b->device && !mapped) cudaFree(b->device);
    }
    if (stream) cudaStreamDestroy(stream);
  }
};

Detector::Detector(const std::string& engine_path, const DetectorOptions& options) : impl_(new Impl) {
  impl_->engine = loadEngine(engine_path, options);
  impl_->options = options;
  impl_->setUp();
}

Detector::Detector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

Detector Detector::clone() const {
  auto impl = std::make_unique<Impl>();
  impl->engine = impl_->engine;
  impl->options = impl_->options;
  impl->setUp();
  return Detector(std::move(impl));
}

std::vector<Detections> Detector::detect(const std::vector<cv::Mat>& images) {
  TRTBUILD_CUDA(cudaSetDevice(impl_->engine->device), impl_->what());
  impl_->times = {};
  std::vector<Detections> all;
  for (std::size_t start = 0; start < images.size(); start += impl_->batch) {
    const std::size_t n = std::min<std::size_t>(impl_->batch, images.size() - start);
    for (auto& d : impl_->detectChunk(images, start, n)) all.push_back(std::move(d));
  }
  return all;
}

Detections Detector::detect(const cv::Mat& image) { return detect(std::vector<cv::Mat>{image}).front(); }

const Sidecar& Detector::sidecar() const { return impl_->sidecar(); }
int Detector::batch() const { return impl_->batch; }
bool Detector::mapped() const { return impl_->mapped; }
std::string Detector::tensorrtVersion() const { return compat::libraryVersion(); }
std::string Detector::deviceName() const { return impl_->engine->prop.name; }
const StageTimes& Detector::lastTimes() const { return impl_->times; }

std::size_t Detector::deviceMemoryBytes() const {
  std::size_t bytes = compat::deviceMemoryBytes(*impl_->engine->engine);
  if (!impl_->mapped) {
    bytes += impl_->input.bytes;
    for (const Buffer& b : impl_->outputs) bytes += b.bytes;
  }
  return bytes;
}

}  // namespace trtbuild
