// trtbuild C++: the one exception type. Its message is one line that names the file and the fix, as the
// Python package's errors do; kind() is the exit code the tools return (trtbuild's CLI uses the same codes).
#pragma once

#include <stdexcept>
#include <string>

namespace trtbuild {

enum class ErrorKind : int {
  Runtime = 1,     // TensorRT or CUDA failed, an engine that does not fit this host (EngineMismatchError)
  Input = 2,       // a file or option given by the user is missing, unreadable or of the wrong kind
  Dependency = 3,  // TensorRT, a GPU or a CUDA driver is not available here
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::Input)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }
  int exitCode() const noexcept { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

}  // namespace trtbuild
