// Reading and checking the engine sidecar (trtbuild/trt/sidecar.py writes it; artifacts.run_stage adds "outputs"
// with the engine's sha256). Every failure is one line naming the file and what to do.
#include "trtbuild/sidecar.hpp"

#include <cctype>
#include <fstream>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "trtbuild/error.hpp"
#include "trtbuild/sources.hpp"

namespace trtbuild {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // key order kept: the rebuild command lists options in file order

namespace {

const char* kRebuildHint = "rebuild the engine with `trtbuild build MODEL.onnx` (it writes ENGINE.json beside it)";

[[noreturn]] void bad(const fs::path& file, const std::string& what) {
  throw Error(file.string() + ": " + what + "; " + kRebuildHint);
}

std::vector<std::int64_t> intList(const json& j, const fs::path& file, const std::string& field) {
  if (!j.is_array()) bad(file, "\"" + field + "\" is not a list of integers");
  std::vector<std::int64_t> out;
  for (const auto& v : j) {
    if (!v.is_number_integer()) bad(file, "\"" + field + "\" is not a list of integers");
    out.push_back(v.get<std::int64_t>());
  }
  return out;
}

std::string str(const json& j, const char* key, const std::string& fallback = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// version_tuple: the first three numbers of a version string ("10.13.3.9" → 10, 13, 3)
std::vector<long> versionTuple(const std::string& v) {
  std::vector<long> out;
  std::size_t i = 0;
  while (i < v.size() && out.size() < 3) {
    if (std::isdigit(static_cast<unsigned char>(v[i]))) {
      std::size_t j = i;
      while (j < v.size() && std::isdigit(static_cast<unsigned char>(v[j]))) ++j;
      out.push_back(std::stol(v.substr(i, j - i)));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

// _cc: "8.9" → (8, 9)
std::vector<long> ccTuple(const std::string& v) {
  std::vector<long> out;
  std::stringstream ss(v);
  std::string part;
  while (out.size() < 2 && std::getline(ss, part, '.')) {
    try {
      out.push_back(std::stol(part));
    } catch (const std::exception&) {
      out.push_back(-1);
    }
  }
  return out;
}

// Python's str() of a JSON value, as an f-string writes an option's value.
std::string pyStr(const json& v, bool nested = false) {
  if (v.is_string()) return nested ? "'" + v.get<std::string>() + "'" : v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_null()) return "None";
  if (v.is_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + pyStr(v[i], true);
    return out + "]";
  }
  return v.dump();
}

// `trtbuild build`'s defaults (trtbuild/config.py BuildConfig().to_dict()): an option equal to its default is left
// out of the rebuild command. tests/cpp/test_cpp.py compares the resulting commands with Python's.
const json& buildDefaults() {
  static const json d = json::parse(R"({"precision": "fp16", "int8_mode": "auto", "min_batch": null,
    "opt_batch": null, "max_batch": null, "min_hw": null, "opt_hw": null, "max_hw": null, "workspace_mb": null,
    "opt_level": 3, "hardware_compat": "none", "version_compatible": false, "dla_core": null, "gpu_fallback": true,
    "profiling_verbosity": "detailed", "strongly_typed": null, "nms": null, "calib_images": "calib_data",
    "flavor": "auto", "target_cc": null})");
  return d;
}

// Python's == between a sidecar value and a default (True == 1, lists never equal None)
bool pyEqual(const json& a, const json& b) {
  if (a.is_number() && b.is_boolean()) return a.get<double>() == (b.get<bool>() ? 1.0 : 0.0);
  if (a.is_boolean() && b.is_number()) return pyEqual(b, a);
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  return a == b;
}

void rebuildPieces(const json& options, Sidecar& s) {
  const json& defaults = buildDefaults();
  json rebuilt = defaults;  // BuildConfig(**options): what a rebuild's engine is named after
  for (auto it = options.begin(); it != options.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    if (defaults.contains(key)) rebuilt[key] = value;
    if (key == "precision" || key == "profiling_verbosity" || value.is_null()) continue;
    if (pyEqual(value, defaults.contains(key) ? defaults[key] : json())) continue;
    std::string flag = "--" + key;
    for (char& c : flag) c = c == '_' ? '-' : c;
    if (key == "strongly_typed") {
      s.rebuild_flags.push_back(std::string("--typing ") + (value.is_boolean() && value.get<bool>() ? "strong" : "weak"));
    } else if (key == "gpu_fallback") {
      s.rebuild_flags.push_back("--no-gpu-fallback");
    } else if (key == "version_compatible") {
      s.rebuild_flags.push_back(flag);
    } else if (key == "calib_images") {
      s.rebuild_flags.push_back("--calib " + pyStr(value));
    } else if (key.size() > 3 && key.compare(key.size() - 3, 3, "_hw") == 0 && value.is_array() && value.size() >= 2) {
      s.rebuild_flags.push_back(flag + " " + pyStr(value[0]) + "," + pyStr(value[1]));
    } else {
      s.rebuild_flags.push_back(flag + " " + pyStr(value));
    }
  }
  // Layout.engine(precision, nms, dla_core): NAME.PREC[-nms][.dlaN].engine (the default flavor's name)
  s.rebuilt_engine_tail = "." + pyStr(rebuilt["precision"]) + (rebuilt["nms"].is_null() ? "" : "-nms") +
                          (rebuilt["dla_core"].is_null() ? "" : ".dla" + pyStr(rebuilt["dla_core"])) + ".engine";
}

// layout.model_name: "m.fp16.onnx" → "m"
std::string modelName(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".onnx") == 0) {
    name = name.substr(0, name.size() - 5);
  } else {
    const std::size_t dot = name.rfind('.');
    if (dot != std::string::npos && dot > 0 && dot + 1 < name.size()) name = name.substr(0, dot);
  }
  static const char* suffixes[] = {".int8fb", ".int8", ".fp16", ".sim", ".nms", ".nms-efficient"};
  for (bool changed = true; changed;) {
    changed = false;
    for (const char* suffix : suffixes) {
      const std::string sfx = suffix;
      if (name.size() >= sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
        name = name.substr(0, name.size() - sfx.size());
        changed = true;
      }
    }
  }
  return name;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

}  // namespace

const TensorSpec& Sidecar::input() const {
  for (const auto& t : io)
    if (t.input) return t;
  throw Error(path.string() + ": no input tensor in \"io\"; " + kRebuildHint);
}

const TensorSpec& Sidecar::output() const {
  for (const auto& t : io)
    if (!t.input) return t;
  throw Error(path.string() + ": no output tensor in \"io\"; " + kRebuildHint);
}

std::string Sidecar::className(int class_id) const {
  auto it = names.find(class_id);
  return it != names.end() ? it->second : std::to_string(class_id);
}

std::string Sidecar::label() const {
  const std::string name = flavor == "rtx" ? "TensorRT-RTX" : "TensorRT";
  return tensorrt_version.empty() ? name : name + " " + tensorrt_version;
}

fs::path sidecarPath(const fs::path& engine) { return fs::path(engine.string() + ".json"); }

Sidecar readSidecar(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(file.string() + ": cannot be read; check the path and its permissions");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& exc) {
    std::string what = exc.what();
    bad(file, "not valid JSON (" + what.substr(what.find(']') + 2) + ")");
  }
  if (!j.is_object()) bad(file, "not a trtbuild engine sidecar (a JSON object is expected)");
  for (const char* key : {"io", "imgsz", "names"}) {
    if (!j.contains(key)) bad(file, std::string("no \"") + key + "\": not a trtbuild engine sidecar");
  }
  Sidecar s;
  s.path = file;
  try {
    s.engine = str(j, "engine");
    if (j.contains("engine_bytes") && j["engine_bytes"].is_number_integer()) s.engine_bytes = j["engine_bytes"];
    if (j.contains("outputs") && j["outputs"].is_object() && !s.engine.empty()) {
      s.engine_sha256 = str(j["outputs"], s.engine.c_str());
    }
    const json& names = j["names"];
    if (names.is_object()) {
      for (auto it = names.begin(); it != names.end(); ++it) {
        s.names[std::stoi(it.key())] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
      }
    } else if (names.is_array()) {
      for (std::size_t i = 0; i < names.size(); ++i) s.names[static_cast<int>(i)] = names[i].get<std::string>();
    } else if (!names.is_null()) {
      bad(file, "\"names\" is neither a mapping nor a list of class names");
    }
    const json& imgsz = j["imgsz"];
    if (imgsz.is_number_integer()) {
      s.imgsz_h = s.imgsz_w = imgsz.get<int>();
    } else {
      const auto hw = intList(imgsz, file, "imgsz");
      if (hw.size() != 2) bad(file, "\"imgsz\" is not [height, width]");
      s.imgsz_h = static_cast<int>(hw[0]);
      s.imgsz_w = static_cast<int>(hw[1]);
    }
    if (s.imgsz_h <= 0 || s.imgsz_w <= 0) bad(file, "\"imgsz\" must be positive");
    if (j.contains("stride") && j["stride"].is_number_integer()) s.stride = j["stride"];
    s.precision = str(j, "precision");
    s.end2end = j.value("end2end", false);
    if (!j["io"].is_array()) bad(file, "\"io\" is not a list of tensors");
    for (const auto& t : j["io"]) {
      if (!t.is_object() || !t.contains("name") || !t.contains("shape")) bad(file, "an \"io\" entry lacks name/shape");
      TensorSpec spec;
      spec.name = t["name"].get<std::string>();
      spec.input = str(t, "mode") == "input";
      spec.shape = intList(t["shape"], file, "io[].shape");
      spec.dtype = str(t, "dtype", "float32");
      s.io.push_back(spec);
    }
    s.input();  // an input and an output, or one line
    s.output();
    if (j.contains("profiles") && j["profiles"].is_object()) {
      for (auto it = j["profiles"].begin(); it != j["profiles"].end(); ++it) {
        const json& p = it.value();
        if (!p.is_array() || p.size() != 3) bad(file, "profile of \"" + it.key() + "\" is not [min, opt, max]");
        s.profiles[it.key()] = {intList(p[0], file, "profiles"), intList(p[1], file, "profiles"),
                                intList(p[2], file, "profiles")};
      }
    }
    s.flavor = str(j, "flavor", "tensorrt");
    s.tensorrt_version = str(j, "tensorrt_version");
    if (j.contains("target_compute_capabilities") && j["target_compute_capabilities"].is_array()) {
      for (const auto& cc : j["target_compute_capabilities"]) s.target_compute_capabilities.push_back(cc);
    }
    if (j.contains("gpu") && j["gpu"].is_object() && !j["gpu"].empty()) {
      const json& g = j["gpu"];
      s.gpu = GpuInfo{str(g, "name", "None"), str(g, "compute_capability", "None"), g.value("integrated", false)};
    }
    if (j.contains("dla_core") && j["dla_core"].is_number_integer()) s.dla_core = j["dla_core"].get<int>();
    s.hardware_compat = str(j, "hardware_compat", "none");
    s.version_compatible = j.value("version_compatible", false);
    s.build_input = str(j, "build_input", str(j, "source_onnx"));
    if (j.contains("options") && j["options"].is_object()) {
      s.nms = str(j["options"], "nms");
      rebuildPieces(j["options"], s);
    } else {
      rebuildPieces(json::object(), s);
    }
  } catch (const json::exception& exc) {
    std::string what = exc.what();
    bad(file, "a field has the wrong type (" + what.substr(what.find(']') + 2) + ")");
  } catch (const std::invalid_argument&) {
    bad(file, "\"names\" has a key that is not a class id");
  } catch (const std::out_of_range&) {
    bad(file, "\"names\" has a class id out of range");
  }
  return s;
}

Sidecar loadEngineSidecar(const fs::path& engine, bool verify_sha256) {
  std::error_code ec;
  if (!fs::is_regular_file(engine, ec)) {
    throw Error(engine.string() + ": no such engine file; build it with `trtbuild build MODEL.onnx`");
  }
  const fs::path json_path = sidecarPath(engine);
  if (!fs::exists(json_path, ec)) {
    throw Error(engine.string() + ": no sidecar " + json_path.filename().string() +
                " beside it (class names, input size and I/O tensors come from it); copy the .json written with "
                "the engine next to it, or " + kRebuildHint);
  }
  Sidecar s = readSidecar(json_path);
  const auto size = static_cast<std::int64_t>(fs::file_size(engine, ec));
  const std::string describes = "its sidecar " + json_path.filename().string() + " describes another engine (" +
                                (s.engine.empty() ? std::string("unnamed") : s.engine);
  const std::string fix = "; copy the sidecar written with this engine, or rebuild both with `trtbuild build "
                          "MODEL.onnx --force`";
  if (s.engine_bytes >= 0 && size != s.engine_bytes) {
    throw Error(engine.string() + ": " + describes + ", " + std::to_string(s.engine_bytes) +
                    " bytes) than this file (" + std::to_string(size) + " bytes)" + fix,
                ErrorKind::Input);
  }
  if (verify_sha256 && !s.engine_sha256.empty()) {
    const std::string sha = sha256File(engine);
    if (sha != s.engine_sha256) {
      throw Error(engine.string() + ": " + describes + ", sha256 " + s.engine_sha256.substr(0, 12) +
                  "…) than this file (sha256 " + sha.substr(0, 12) + "…)" + fix);
    }
  }
  return s;
}

std::optional<std::string> engineMismatch(const Sidecar& s, const std::string& trt_version,
                                          const std::string& gpu_name, const std::string& cc) {
  std::vector<std::string> problems;
  const std::string label = s.flavor == "rtx" ? "TensorRT-RTX" : "TensorRT";
  const std::string& built = s.tensorrt_version;
  if (!built.empty() && !trt_version.empty()) {
    const auto bv = versionTuple(built), hv = versionTuple(trt_version);
    if (s.version_compatible) {
      const bool same_major = !bv.empty() && !hv.empty() ? bv[0] == hv[0] : bv.empty() == hv.empty();
      if (!same_major || hv < bv) {
        problems.push_back(label + " " + built + " (version-compatible: runs on " +
                           (bv.empty() ? std::string("?") : std::to_string(bv[0])) + ".x \u2265 " + built + ") vs " +
                           trt_version + " here");
      }
    } else if (bv != hv) {
      problems.push_back(label + " " + built + " vs " + trt_version + " here");
    }
  }
  const auto& targets = s.target_compute_capabilities;
  if (!targets.empty() && !cc.empty()) {
    bool found = false;
    for (const auto& t : targets) found = found || ccTuple(t) == ccTuple(cc);
    if (!found) problems.push_back("compute capabilities " + join(targets, ", ") + " vs " + gpu_name + " (sm " + cc +
                                   ") here");
  }
  if (s.gpu && !gpu_name.empty() && !cc.empty()) {
    const GpuInfo& g = *s.gpu;
    if (s.hardware_compat == "ampere+") {
      if (ccTuple(cc) < std::vector<long>{8, 0}) {
        problems.push_back("an Ampere-or-newer GPU (hardware compat) vs " + gpu_name + " (sm " + cc + ") here");
      }
    } else if (s.hardware_compat == "same-cc") {
      if (ccTuple(cc) != ccTuple(g.compute_capability)) {
        problems.push_back("compute capability " + g.compute_capability + " vs " + cc + " (" + gpu_name + ") here");
      }
    } else if (g.name != gpu_name || ccTuple(cc) != ccTuple(g.compute_capability)) {
      problems.push_back(g.name + " (sm " + g.compute_capability + ") vs " + gpu_name + " (sm " + cc + ") here");
    }
  }
  if (problems.empty()) return std::nullopt;
  return "built for " + join(problems, "; ");
}

std::string rebuildCommand(const fs::path& engine, const Sidecar& s) {
  const std::string parent = engine.parent_path().empty() ? "." : engine.parent_path().string();
  const std::string src = s.build_input.empty() ? "MODEL.sim.onnx" : s.build_input;
  std::string cmd = "trtbuild build " + pythonPath(src[0] == '/' ? src : parent + "/" + src) + " --precision " +
                    (s.precision.empty() ? "fp16" : s.precision);
  for (const auto& flag : s.rebuild_flags) cmd += " " + flag;
  const std::string name = engine.filename().string();
  if (name != modelName(src) + s.rebuilt_engine_tail) cmd += " --name " + name.substr(0, name.find('.'));
  return cmd + " --out-dir " + pythonPath(parent) + " --force";
}

}  // namespace trtbuild
