// What the two command-line tools share: option parsing, the one error path (`error: <message>`, exit code of the
// error's kind, as trtbuild's CLI), and atomic file writes (temporary file beside the target, renamed on success).
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "trtbuild/decode.hpp"
#include "trtbuild/error.hpp"

namespace trtbuild {
namespace cli {

inline double toDouble(const std::string& flag, const std::string& v) {
  try {
    std::size_t used = 0;
    const double d = std::stod(v, &used);
    if (used == v.size()) return d;
  } catch (const std::exception&) {
  }
  throw Error("Invalid value for '" + flag + "': '" + v + "' is not a number");
}

inline int toInt(const std::string& flag, const std::string& v) {
  try {
    std::size_t used = 0;
    const int i = std::stoi(v, &used);
    if (used == v.size()) return i;
  } catch (const std::exception&) {
  }
  throw Error("Invalid value for '" + flag + "': '" + v + "' is not an integer");
}

// The post-processing options every tool takes, with trtbuild infer's defaults and ranges.
inline bool postOption(const std::string& a, const std::function<std::string()>& next, PostprocessOptions& post) {
  if (a == "--conf") {
    post.conf = toDouble(a, next());
    if (!(post.conf >= 0 && post.conf <= 1)) throw Error("Invalid value for '--conf': must lie in [0, 1]");
  } else if (a == "--iou") {
    post.iou = toDouble(a, next());
    if (!(post.iou >= 0 && post.iou <= 1)) throw Error("Invalid value for '--iou': must lie in [0, 1]");
  } else if (a == "--max-det") {
    post.max_det = toInt(a, next());
    if (post.max_det < 1) throw Error("Invalid value for '--max-det': must be at least 1");
  } else if (a == "--multi-label") {
    post.multi_label = true;
  } else if (a == "--agnostic") {
    post.agnostic = true;
  } else {
    return false;
  }
  return true;
}

// Run a tool's body: Error → one line on stderr and its exit code; anything else → exit 1, one line, no abort.
inline int guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exitCode();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

// trtbuild's rule for the files its tools write (trtbuild/owned.py): never over one of the inputs, and never over an
// existing file unless --overwrite says so (the C++ tools keep no record of the files they wrote, so every existing
// file counts as the user's). Checked before the work.
inline void checkOutput(const std::filesystem::path& path, bool overwrite,
                        std::initializer_list<std::filesystem::path> inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  for (const auto& in : inputs) {
    if (fs::exists(in, ec) && fs::equivalent(path, in, ec)) {
      throw Error(path.string() + ": the same file as the input " + in.string() + "; choose another output path");
    }
  }
  if (!overwrite) {
    throw Error(path.string() + ": exists; trtbuild's tools replace no file they cannot tell is theirs: choose "
                "another path, or pass --overwrite to replace it");
  }
}

// Write `fill(stream)` to `path` through a temporary file beside it, renamed into place only on success.
inline void writeAtomic(const std::filesystem::path& path, const std::function<void(std::ofstream&)>& fill) {
  namespace fs = std::filesystem;
  const fs::path folder = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(path.string() + ": its folder does not exist; create it first");
  const fs::path tmp = folder / ("." + path.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path.string() + ": cannot write into " + folder.string() + " (read-only?)", ErrorKind::Runtime);
    try {
      fill(out);
    } catch (...) {
      out.close();
      fs::remove(tmp, ec);
      throw;
    }
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp, ec);
      throw Error(path.string() + ": write failed (disk full?)", ErrorKind::Runtime);
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(path.string() + ": cannot be replaced (" + ec.message() + ")", ErrorKind::Runtime);
  }
}

}  // namespace cli
}  // namespace trtbuild
