// Image / folder / video iteration with trtbuild/vision/io.py's rules, and the JSON line of trtbuild/tasks/infer.py.
#include "trtbuild/sources.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "trtbuild/error.hpp"

namespace trtbuild {
namespace fs = std::filesystem;

namespace {

const std::set<std::string> kImageSuffixes = {".bmp",  ".dib", ".jpg",  ".jpeg", ".jpe",  ".jp2", ".png",
                                              ".webp", ".tif", ".tiff", ".pbm",  ".pgm",  ".ppm", ".pnm",
                                              ".avif", ".dng", ".heic", ".heif", ".mpo"};
const std::set<std::string> kVideoSuffixes = {".mp4", ".m4v", ".mov", ".avi", ".mkv",  ".webm",
                                              ".wmv", ".mpg", ".mpeg", ".ts", ".asf", ".gif"};
const char* kSourceHint = "give an image, a video, or a folder of images";

// pathlib's PurePath.suffix: the last dot-suffix of the name, "" for ".hidden" or "name."
std::string pySuffix(const std::string& name) {
  const std::size_t i = name.rfind('.');
  if (i == std::string::npos || i == 0 || i + 1 >= name.size()) return "";
  return name.substr(i);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string joined(const std::set<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Python json.dumps of a float: shortest round-trip text (nlohmann's Grisu2, like repr), NaN / Infinity spelled out
std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return nlohmann::json(v).dump();
}

std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);  // ensure_ascii
}

void forVideo(const fs::path& path, const std::string& shown, const std::function<void(const Frame&)>& on_frame,
              long& count) {
  cv::VideoCapture cap(path.string());
  if (!cap.isOpened()) throw Error("cannot open video " + shown + ": not a video OpenCV can decode");
  cv::Mat frame;
  long index = 0;
  while (cap.read(frame) && !frame.empty()) {
    Frame f{shown, index, frame};
    if (frame.channels() == 1) cv::cvtColor(frame, f.image, cv::COLOR_GRAY2BGR);
    on_frame(f);
    ++index;
  }
  if (index == 0) throw Error("video " + shown + " has no readable frames");
  count += index;
}

}  // namespace

std::string pythonPath(const std::string& p) {
  if (p.empty()) return ".";
  std::string root;
  std::size_t i = 0;
  if (p[0] == '/') {
    root = (p.size() > 1 && p[1] == '/' && (p.size() == 2 || p[2] != '/')) ? "//" : "/";
    while (i < p.size() && p[i] == '/') ++i;
  }
  std::vector<std::string> parts;
  while (i < p.size()) {
    std::size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    const std::string part = p.substr(i, j - i);
    if (!part.empty() && part != ".") parts.push_back(part);
    i = j + 1;
  }
  std::string out = root;
  for (std::size_t k = 0; k < parts.size(); ++k) out += (k ? "/" : "") + parts[k];
  return out.empty() ? "." : out;
}

cv::Mat readImage(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.empty()) return {};
  cv::Mat img;
  try {
    img = cv::imdecode(data, cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {
    return {};
  }
  if (img.empty() || img.type() != CV_8UC3) return {};
  return img;
}

long forEachFrame(const fs::path& source, const std::function<void(const Frame&)>& on_frame,
                  const std::function<void(const std::string&, const std::string&)>& on_skip) {
  const std::string shown = pythonPath(source.string());
  std::error_code ec;
  if (!fs::exists(source, ec)) throw Error(shown + ": no such file or folder; " + kSourceHint);
  long count = 0;
  if (fs::is_directory(source, ec)) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(source, ec)) {
      if (!entry.is_directory(ec)) names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    std::vector<std::string> images;
    for (const auto& name : names) {
      const std::string suffix = pySuffix(name);
      if (kImageSuffixes.count(lower(suffix))) {
        images.push_back(name);
      } else if (on_skip) {
        on_skip(pythonPath(source.string() + "/" + name),
                "not an image (suffix '" + (suffix.empty() ? std::string("(none)") : suffix) + "')");
      }
    }
    if (images.empty()) {
      throw Error("folder " + shown + (names.empty() ? " is empty" : " holds no image files (" +
                                                                        joined(kImageSuffixes) + ")") +
                  "; " + kSourceHint);
    }
    for (const auto& name : images) {
      const std::string path = pythonPath(source.string() + "/" + name);
      cv::Mat img = readImage(source / name);
      if (img.empty()) {
        if (on_skip) on_skip(path, "cannot be decoded as an image");
        continue;
      }
      on_frame(Frame{path, std::nullopt, img});
      ++count;
    }
    return count;
  }
  const std::string suffix = lower(pySuffix(source.filename().string()));
  if (kImageSuffixes.count(suffix)) {
    cv::Mat img = readImage(source);
    if (img.empty()) throw Error("cannot read image " + shown + ": the file is unreadable or not a valid image");
    on_frame(Frame{shown, std::nullopt, img});
    return 1;
  }
  if (kVideoSuffixes.count(suffix)) {
    forVideo(source, shown, on_frame, count);
    return count;
  }
  throw Error("input " + shown + " is neither an image (" + joined(kImageSuffixes) + ") nor a video (" +
              joined(kVideoSuffixes) + ")");
}

std::string jsonLine(const Frame& frame, const Detections& detections, const std::map<int, std::string>& names) {
  std::string out = "{\"path\": " + quoted(frame.path);
  if (frame.frame) out += ", \"frame\": " + std::to_string(*frame.frame);
  out += ", \"width\": " + std::to_string(frame.image.cols) + ", \"height\": " + std::to_string(frame.image.rows);
  out += ", \"detections\": [";
  for (std::size_t i = 0; i < detections.size(); ++i) {
    const Detection& d = detections[i];
    auto it = names.find(d.class_id);
    const std::string name = it != names.end() ? it->second : std::to_string(d.class_id);
    out += (i ? ", " : "");
    out += "{\"box\": [" + num(d.box[0]) + ", " + num(d.box[1]) + ", " + num(d.box[2]) + ", " + num(d.box[3]) +
           "], \"score\": " + num(d.score) + ", \"class_id\": " + std::to_string(d.class_id) +
           ", \"class_name\": " + quoted(name) + "}";
  }
  return out + "]}";
}

}  // namespace trtbuild
