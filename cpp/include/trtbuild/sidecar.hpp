// The engine sidecar `<engine>.json` that `trtbuild build` writes beside every engine (trtbuild/trt/sidecar.py):
// class names, input size, stride, precision, I/O tensor names and shapes, profiles, end-to-end or raw head, the
// TensorRT version and GPU it was built for, and the engine's size and sha256. Read with nlohmann-json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trtbuild {

struct TensorSpec {
  std::string name;
  bool input = false;
  std::vector<std::int64_t> shape;  // -1 for a dynamic axis
  std::string dtype;                // "float32", ...
};

struct Profile {
  std::vector<std::int64_t> min, opt, max;
};

struct GpuInfo {
  std::string name;
  std::string compute_capability;  // "8.9"
  bool integrated = false;
};

struct Sidecar {
  std::filesystem::path path;  // the .json file
  std::string engine;          // the engine's file name when it was built
  std::int64_t engine_bytes = -1;
  std::string engine_sha256;   // from "outputs" (written by trtbuild's stage runner); empty if absent
  std::map<int, std::string> names;
  int imgsz_h = 0, imgsz_w = 0;
  int stride = 32;
  std::string precision;
  bool end2end = false;
  std::vector<TensorSpec> io;
  std::map<std::string, Profile> profiles;
  std::string flavor = "tensorrt";  // "tensorrt" or "rtx"
  std::string tensorrt_version;
  std::vector<std::string> target_compute_capabilities;  // TensorRT-RTX engines
  std::optional<GpuInfo> gpu;                            // standard TensorRT engines
  std::optional<int> dla_core;
  std::string hardware_compat = "none";
  bool version_compatible = false;
  std::string build_input;  // the ONNX the engine was built from, relative to the engine's folder
  std::string nms;          // "onnx" / "efficient" for end-to-end engines, else empty
  // rebuildCommand's pieces, from "options" (the build options that differ from `trtbuild build`'s defaults)
  std::vector<std::string> rebuild_flags;
  std::string rebuilt_engine_tail;  // ".fp16.engine": the file name a rebuild with those options gets after NAME

  const TensorSpec& input() const;   // the (one) input tensor
  const TensorSpec& output() const;  // the first output tensor
  int numClasses() const { return static_cast<int>(names.size()); }
  std::string className(int class_id) const;  // the id as text when the sidecar has no such class
  std::string label() const;                  // "TensorRT 10.13.3.9" / "TensorRT-RTX 1.7.1.116"
};

// `<engine>.json` beside `engine`.
std::filesystem::path sidecarPath(const std::filesystem::path& engine);

// Parse and validate a sidecar file; Error naming the file and what is missing or malformed.
Sidecar readSidecar(const std::filesystem::path& json_path);

// The sidecar of `engine` after checking that it describes this very file: the engine and its sidecar exist, the
// size matches "engine_bytes" and (verify_sha256) the sha256 matches the one recorded at build time. An engine
// without a sidecar, or with another engine's sidecar, is refused in one line that says what to do.
Sidecar loadEngineSidecar(const std::filesystem::path& engine, bool verify_sha256 = true);

// Why an engine with this sidecar cannot run on a host with `trt_version` (of the engine's flavor), GPU `gpu_name`
// of compute capability `cc` ("8.9"), or nullopt. The rule of trtbuild/trt/sidecar.py's engine_mismatch, same text.
std::optional<std::string> engineMismatch(const Sidecar& sidecar, const std::string& trt_version,
                                          const std::string& gpu_name, const std::string& cc);

// The `trtbuild build` command that makes `engine` again with the options its sidecar records (the text of
// trtbuild/trt/sidecar.py's rebuild_command).
std::string rebuildCommand(const std::filesystem::path& engine, const Sidecar& sidecar);

// Hex sha256 of a file (Error if it cannot be read).
std::string sha256File(const std::filesystem::path& path);

}  // namespace trtbuild
