// The one place where TensorRT version differences are decided for the C++ runtime (as trtbuild/trt/compat.py
// is for Python). Everything else in src/ calls the API common to 10.3 (JetPack 6), 10.16 (JetPack 7) and 11.x.
//
// What differs across the releases this project compiles against (public headers, tests/cpp/test_cpp.py):
//   * ICudaEngine::getDeviceMemorySize(): gone in 11 → getDeviceMemorySizeV2() (10.1+).
//   * ICudaEngine::createExecutionContextWithoutDeviceMemory(): gone in 11 → createExecutionContext(strategy).
//   * DataType::kFP4 / kE8M0: absent from 10.3, present in 10.16 and 11.1 (the guards below place them at 10.8 and
//     10.12 after NVIDIA's release notes; only 10.3, 10.16 and 11.1 are compiled here).
//   * IExecutionContext::enqueueV2 / getNbBindings / binding indices: gone since 10.0 — name-based I/O
//     (setTensorAddress, setInputShape, getTensorShape, enqueueV3) is the only path, in every release here.
//   * Builder precision flags (kFP16, kINT8) and INT8 calibrators: gone in 11, but only the builder needs them;
//     trtbuild builds engines in Python (trtbuild/trt/builder.py), so this runtime never touches them.
#pragma once

#include <cstddef>
#include <string>

#include <NvInfer.h>
#include <NvInferRuntime.h>

static_assert(NV_TENSORRT_MAJOR >= 10,
              "trtbuild's C++ detector needs TensorRT 10.x or 11.x headers (name-based I/O, enqueueV3)");

#define TRTBUILD_TRT_VERSION_AT_LEAST(major, minor) \
  (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))

namespace trtbuild {
namespace compat {

// The TensorRT headers this file was compiled against, "11.1.0".
inline std::string headerVersion() {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH);
}

// The TensorRT library loaded at run time, "10.13.3.9" (what the sidecar's tensorrt_version records).
inline std::string libraryVersion() {
  return std::to_string(getInferLibMajorVersion()) + "." + std::to_string(getInferLibMinorVersion()) + "." +
         std::to_string(getInferLibPatchVersion()) + "." + std::to_string(getInferLibBuildVersion());
}

// Activation memory one execution context of `engine` allocates.
inline std::size_t deviceMemoryBytes(const nvinfer1::ICudaEngine& engine) {
#if TRTBUILD_TRT_VERSION_AT_LEAST(10, 1)
  return static_cast<std::size_t>(engine.getDeviceMemorySizeV2());
#else
  return static_cast<std::size_t>(engine.getDeviceMemorySize());
#endif
}

// An execution context that owns its activation memory (allocated once, at creation).
inline nvinfer1::IExecutionContext* createContext(nvinfer1::ICudaEngine& engine) {
  return engine.createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kSTATIC);
}

// trtbuild's names for TensorRT data types (NumPy's, as the sidecar writes them).
inline std::string dtypeName(nvinfer1::DataType t) {
  using nvinfer1::DataType;
  switch (t) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kBF16: return "bfloat16";
    case DataType::kINT8: return "int8";
    case DataType::kINT32: return "int32";
    case DataType::kINT64: return "int64";
    case DataType::kBOOL: return "bool";
    case DataType::kUINT8: return "uint8";
    case DataType::kFP8: return "float8";
    case DataType::kINT4: return "int4";
#if TRTBUILD_TRT_VERSION_AT_LEAST(10, 8)
    case DataType::kFP4: return "float4";
#endif
#if TRTBUILD_TRT_VERSION_AT_LEAST(10, 12)
    case DataType::kE8M0: return "e8m0";
#endif
  }
  return "dtype " + std::to_string(static_cast<int>(t));
}

}  // namespace compat
}  // namespace trtbuild
