// trtbuild-detect: the C++ counterpart of `trtbuild infer ENGINE SOURCE` on a TensorRT GPU host — the same JSON
// lines (path, frame for video, width, height, detections in original pixels) from trtbuild::Detector.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "trtbuild/detector.hpp"
#include "trtbuild/sources.hpp"

namespace fs = std::filesystem;
using namespace trtbuild;

namespace {

const char* kUsage = R"(Usage: trtbuild-detect ENGINE SOURCE [options]

  Detect objects in SOURCE (an image, a folder of images or a video) with a trtbuild ENGINE (standard TensorRT
  10.x / 11.x; its sidecar ENGINE.json must be beside it). Prints one JSON line per image or video frame, as
  `trtbuild infer` does; a summary goes to stderr.

Options:
  --json FILE          write the JSON lines to FILE (atomically) instead of stdout; an existing FILE is refused
  --overwrite          let --json replace an existing file
  --conf 0.25 --iou 0.7 --max-det 300 --multi-label --agnostic
                       post-processing, as trtbuild infer
  --batch N            images per engine call (dynamic-batch engines; default: the static batch, else 1)
  --device N           CUDA device (default 0)
  --cuda-graph         capture copy + enqueueV3 + copy as a CUDA graph and replay it
  --no-verify          do not hash the engine against its sidecar's sha256 (the size is still checked)
  -h, --help           this text
)";

}  // namespace

int main(int argc, char** argv) {
  return cli::guarded([&]() -> int {
    std::vector<std::string> pos;
    std::string json_path;
    bool overwrite = false;
    DetectorOptions options;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw Error("Option '" + a + "' requires an argument (see: trtbuild-detect --help)");
        return argv[++i];
      };
      if (a == "-h" || a == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (a == "--json") {
        json_path = next();
      } else if (a == "--overwrite") {
        overwrite = true;
      } else if (a == "--batch") {
        options.batch = cli::toInt(a, next());
        if (options.batch < 1) throw Error("Invalid value for '--batch': must be at least 1");
      } else if (a == "--device") {
        options.device = cli::toInt(a, next());
      } else if (a == "--cuda-graph") {
        options.cuda_graph = true;
      } else if (a == "--no-verify") {
        options.verify_sha256 = false;
      } else if (cli::postOption(a, next, options.post)) {
      } else if (a.size() > 1 && a[0] == '-') {
        throw Error("No such option '" + a + "' (see: trtbuild-detect --help)");
      } else {
        pos.push_back(a);
      }
    }
    if (pos.size() != 2) throw Error("expected ENGINE and SOURCE (see: trtbuild-detect --help)");
    const fs::path source = pos[1];
    if (!json_path.empty()) cli::checkOutput(json_path, overwrite, {fs::path(pos[0]), source});
    // the source is checked before the engine is loaded (as trtbuild infer): a typo costs no engine load
    std::error_code ec;
    if (!fs::exists(source, ec)) {
      throw Error(pythonPath(source.string()) + ": no such file or folder; give an image, a video, or a folder of "
                  "images");
    }
    Detector detector(pos[0], options);
    std::vector<std::string> lines;
    std::vector<Frame> pending;
    long detections = 0, skipped = 0;
    StageTimes total;
    auto flush = [&]() {
      std::vector<cv::Mat> images;
      for (const Frame& f : pending) images.push_back(f.image);
      const std::vector<Detections> dets = detector.detect(images);
      const StageTimes& t = detector.lastTimes();
      total.preprocess_ms += t.preprocess_ms;
      total.infer_ms += t.infer_ms;
      total.postprocess_ms += t.postprocess_ms;
      total.images += t.images;
      for (std::size_t i = 0; i < pending.size(); ++i) {
        lines.push_back(jsonLine(pending[i], dets[i], detector.sidecar().names));
        detections += static_cast<long>(dets[i].size());
      }
      pending.clear();
    };
    forEachFrame(
        source,
        [&](const Frame& f) {
          pending.push_back(Frame{f.path, f.frame, f.image.clone()});  // a video reuses its frame buffer
          if (static_cast<int>(pending.size()) == detector.batch()) flush();
        },
        [&](const std::string& path, const std::string& reason) {
          std::cerr << "skipped " << path << ": " << reason << "\n";
          ++skipped;
        });
    if (!pending.empty()) flush();
    if (!json_path.empty()) {
      cli::writeAtomic(json_path, [&](std::ofstream& o) {
        for (const auto& line : lines) o << line << "\n";
      });
    } else {
      for (const auto& line : lines) std::cout << line << "\n";
    }
    const double n = total.images > 0 ? total.images : 1;
    char per[160];
    std::snprintf(per, sizeof per, " (per image: pre %.1f ms, infer %.1f ms, post %.1f ms)", total.preprocess_ms / n,
                  total.infer_ms / n, total.postprocess_ms / n);
    std::string summary = "detect    " + std::to_string(lines.size()) + " image(s), " + std::to_string(detections) +
                          " detection(s)" + (skipped ? ", " + std::to_string(skipped) + " file(s) skipped" : "") +
                          (json_path.empty() ? "" : " \u2192 " + json_path) + ", TensorRT " + detector.tensorrtVersion() +
                          " on " + detector.deviceName() + (options.cuda_graph ? ", CUDA graph" : "") + per;
    (json_path.empty() ? std::cerr : std::cout) << summary << "\n";
    return 0;
  });
}
