// Frames of an image, a folder of images or a video, in the order and with the skip rules of trtbuild's
// vision/io.py (`iter_sources`), and the JSON line `trtbuild infer` prints for each.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <opencv2/core.hpp>

#include "trtbuild/decode.hpp"

namespace trtbuild {

struct Frame {
  std::string path;                  // as Python's str(Path) writes it
  std::optional<long> frame;         // video frame index (0-based)
  cv::Mat image;                     // BGR uint8
};

// Decode an image file as trtbuild does (file bytes → cv::imdecode IMREAD_COLOR); empty Mat if unreadable.
cv::Mat readImage(const std::filesystem::path& path);

// Call `on_frame` for every frame of `source` (image, folder, video). Files of a folder that are not images or
// cannot be decoded go to `on_skip(path, reason)`; a missing source, an empty folder, an unreadable single image or
// video raise Error. Returns the number of frames.
long forEachFrame(const std::filesystem::path& source, const std::function<void(const Frame&)>& on_frame,
                  const std::function<void(const std::string&, const std::string&)>& on_skip = {});

// Python's str(pathlib.Path(p)): repeated and trailing separators and "." components removed.
std::string pythonPath(const std::string& p);

// One line of `trtbuild infer` output (no newline): {"path", ["frame",] "width", "height", "detections":
// [{"box", "score", "class_id", "class_name"}]} with Python json.dumps' separators, key order and number format.
std::string jsonLine(const Frame& frame, const Detections& detections, const std::map<int, std::string>& names);

}  // namespace trtbuild
