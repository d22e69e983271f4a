// trtbuild-postprocess: trtbuild's C++ pre/post-processing on the CPU, with the engine's outputs supplied from a
// file (e.g. saved from ONNX Runtime). It reads the engine's sidecar exactly as trtbuild::Detector does, letterboxes
// every frame of SOURCE, decodes the outputs and prints the JSON lines `trtbuild infer` prints. Runs where TensorRT
// is absent: it is how the C++ pre/post-processing is compared with Python's (tests/cpp/test_cpp.py).
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "trtbuild/decode.hpp"
#include "trtbuild/letterbox.hpp"
#include "trtbuild/sidecar.hpp"
#include "trtbuild/sources.hpp"

namespace fs = std::filesystem;
using namespace trtbuild;

namespace {

const char* kUsage = R"(Usage: trtbuild-postprocess ENGINE SOURCE [options]

  Letterbox every frame of SOURCE (an image, a folder of images or a video) for ENGINE (its sidecar ENGINE.json,
  checked against the engine file as trtbuild::Detector checks it), decode the engine's outputs for those frames
  from --raw and print one JSON line per frame, as `trtbuild infer` does.

Options:
  --raw FILE           the engine's output for every frame, float32, frames one after another
                       ([4+nc, A] raw head or [K, 6] end-to-end, per the sidecar)
  --dump-input FILE    write the letterboxed input of every frame (float32 [3, H, W] each) to FILE (an existing
                       FILE is refused)
  --overwrite          let --dump-input replace an existing file
  --conf 0.25 --iou 0.7 --max-det 300 --multi-label --agnostic
                       post-processing, as trtbuild infer / eval
  --no-verify          do not hash the engine against its sidecar's sha256 (the size is still checked)
  --host TRT_VERSION GPU_NAME CC
                       refuse the engine as trtbuild::Detector would on a host with this TensorRT and GPU
  -h, --help           this text
)";

}  // namespace

int main(int argc, char** argv) {
  return cli::guarded([&]() -> int {
    std::vector<std::string> pos;
    std::string raw_path, dump_path;
    std::vector<std::string> host;
    PostprocessOptions post;
    bool verify = true;
    bool overwrite = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw Error("Option '" + a + "' requires an argument (see: trtbuild-postprocess --help)");
        return argv[++i];
      };
      if (a == "-h" || a == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (a == "--raw") {
        raw_path = next();
      } else if (a == "--dump-input") {
        dump_path = next();
      } else if (a == "--overwrite") {
        overwrite = true;
      } else if (a == "--no-verify") {
        verify = false;
      } else if (a == "--host") {
        for (int k = 0; k < 3; ++k) host.push_back(next());
      } else if (cli::postOption(a, next, post)) {
      } else if (a.size() > 1 && a[0] == '-') {
        throw Error("No such option '" + a + "' (see: trtbuild-postprocess --help)");
      } else {
        pos.push_back(a);
      }
    }
    if (pos.size() != 2) throw Error("expected ENGINE and SOURCE (see: trtbuild-postprocess --help)");
    if (raw_path.empty() && dump_path.empty()) throw Error("nothing to do: give --raw FILE and/or --dump-input FILE");
    const fs::path engine = pos[0], source = pos[1];
    if (!dump_path.empty()) cli::checkOutput(dump_path, overwrite, {engine, source, fs::path(raw_path)});
    const Sidecar s = loadEngineSidecar(engine, verify);
    if (!host.empty()) {
      if (auto why = engineMismatch(s, host[0], host[1], host[2])) {
        throw Error(engine.string() + ": " + *why + "; rebuild it on this host: " + rebuildCommand(engine, s),
                    ErrorKind::Runtime);
      }
    }
    // per-frame output size from the sidecar's output shape [B, C, A] / [B, K, 6]
    const TensorSpec& out = s.output();
    if (out.shape.size() != 3 || out.shape[1] <= 0 || out.shape[2] <= 0) {
      throw Error(s.path.string() + ": output \"" + out.name + "\" is not [B, 4+nc, A] or [B, K, 6] with static "
                  "C and A; trtbuild-postprocess needs static output dims");
    }
    const int rows = static_cast<int>(out.shape[1]), cols = static_cast<int>(out.shape[2]);
    const std::size_t per_frame = static_cast<std::size_t>(rows) * cols;
    std::vector<float> raw;
    if (!raw_path.empty()) {
      std::ifstream in(raw_path, std::ios::binary | std::ios::ate);
      if (!in) throw Error(raw_path + ": cannot be read; give the file of saved engine outputs");
      const auto bytes = static_cast<std::size_t>(in.tellg());
      if (bytes % (sizeof(float) * per_frame) != 0) {
        throw Error(raw_path + ": " + std::to_string(bytes) + " bytes is not a whole number of float32 outputs of " +
                    std::to_string(rows) + "x" + std::to_string(cols) + " (" + out.name + " of " +
                    s.path.filename().string() + "); save the engine's output for every frame");
      }
      raw.resize(bytes / sizeof(float));
      in.seekg(0);
      in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(bytes));
    }
    const std::size_t slot = static_cast<std::size_t>(3) * s.imgsz_h * s.imgsz_w;
    std::vector<float> input(slot);
    std::vector<std::string> lines;
    std::vector<float> dumped;
    std::size_t index = 0;
    forEachFrame(
        source,
        [&](const Frame& f) {
          const LetterboxInfo info = letterbox(f.image, s.imgsz_h, s.imgsz_w, input.data());
          if (!dump_path.empty()) dumped.insert(dumped.end(), input.begin(), input.end());
          if (!raw_path.empty()) {
            if ((index + 1) * per_frame > raw.size()) {
              throw Error(raw_path + ": holds the outputs of " + std::to_string(raw.size() / per_frame) +
                          " frame(s) but " + source.string() + " has more; save the output of every frame");
            }
            const float* pred = raw.data() + index * per_frame;
            const Detections d = s.end2end ? decodeEnd2End(pred, rows, cols, info, post)
                                           : decodeRaw(pred, rows, cols, info, post);
            lines.push_back(jsonLine(f, d, s.names));
          }
          ++index;
        },
        [](const std::string& path, const std::string& reason) {
          std::cerr << "skipped " << path << ": " << reason << "\n";
        });
    if (!raw_path.empty() && index * per_frame != raw.size()) {
      throw Error(raw_path + ": holds the outputs of " + std::to_string(raw.size() / per_frame) + " frame(s) but " +
                  source.string() + " has " + std::to_string(index) + "; save the output of every frame");
    }
    if (!dump_path.empty()) {
      cli::writeAtomic(dump_path, [&](std::ofstream& o) {
        o.write(reinterpret_cast<const char*>(dumped.data()), static_cast<std::streamsize>(dumped.size() * 4));
      });
    }
    for (const auto& line : lines) std::cout << line << "\n";
    return 0;
  });
}
