// trtbuild::Detector: run a trtbuild engine with standard TensorRT 10.x / 11.x and get what `trtbuild infer` gets.
//
// Loading: the sidecar `<engine>.json` is read and checked first (this very engine by size and sha256, built by
// the TensorRT version and for the GPU found here), then the engine is deserialized. Running: letterbox into a
// pinned host buffer (mapped zero-copy memory on Jetson / integrated GPUs), one async host→device copy,
// enqueueV3 with name-based tensor addresses, one async device→host copy, one stream synchronize (optionally
// all of it as one captured CUDA graph), then decode + NMS exactly like trtbuild's Python.
//
// Threads: a Detector owns one IExecutionContext, one CUDA stream and its buffers, so it is used by one thread at
// a time. For N threads call clone() N - 1 times: the clones share the deserialized engine (its weights) and get
// a context, stream and buffers of their own.
//
// No TensorRT or CUDA type appears here: an application includes this header with OpenCV only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "trtbuild/decode.hpp"
#include "trtbuild/sidecar.hpp"

namespace trtbuild {

struct DetectorOptions {
  int device = 0;             // CUDA device ordinal
  int batch = 0;              // images per engine call: 0 = the engine's static batch, or 1 for a dynamic one
  bool cuda_graph = false;    // capture copy → enqueueV3 → copy once per input shape and replay it
  bool verify_sha256 = true;  // hash the engine file against its sidecar (tens of ms for a 10 MB engine)
  PostprocessOptions post;    // conf, iou, max_det, ... (trtbuild infer's defaults)
};

// Wall time of the last detect() call per stage, in milliseconds.
struct StageTimes {
  double preprocess_ms = 0, infer_ms = 0, postprocess_ms = 0;
  int images = 0;
};

class Detector {
 public:
  explicit Detector(const std::string& engine_path, const DetectorOptions& options = {});
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // Another Detector on the same engine (weights shared) with its own context, stream and buffers: one per thread.
  Detector clone() const;

  // Detections of each BGR uint8 image, boxes in its original pixels, highest score first.
  std::vector<Detections> detect(const std::vector<cv::Mat>& images);
  Detections detect(const cv::Mat& image);

  const Sidecar& sidecar() const;
  int batch() const;                     // images per engine call
  bool mapped() const;                   // zero-copy host memory (integrated GPU)
  std::string tensorrtVersion() const;   // of the TensorRT library linked in, e.g. "10.13.3.9"
  std::string deviceName() const;        // the GPU, e.g. "NVIDIA Orin"
  std::size_t deviceMemoryBytes() const; // activations (TensorRT) + this Detector's I/O buffers
  const StageTimes& lastTimes() const;

 private:
  struct Impl;
  explicit Detector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trtbuild
