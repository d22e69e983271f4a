// consumer ENGINE IMAGE: read the engine's sidecar, letterbox IMAGE into a buffer of the engine's input size and
// print what an application would feed the engine; with trtbuild::detector (a TensorRT host), also detect.
#include <iostream>
#include <vector>

#include <trtbuild/error.hpp>
#include <trtbuild/letterbox.hpp>
#include <trtbuild/sidecar.hpp>
#include <trtbuild/sources.hpp>
#ifdef HAVE_TRTBUILD_DETECTOR
#include <trtbuild/detector.hpp>
#endif

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: consumer ENGINE IMAGE\n";
    return 2;
  }
  try {
    const trtbuild::Sidecar s = trtbuild::loadEngineSidecar(argv[1]);
    const cv::Mat image = trtbuild::readImage(argv[2]);
    if (image.empty()) throw trtbuild::Error(std::string(argv[2]) + ": not a readable image");
    std::vector<float> input(3 * static_cast<size_t>(s.imgsz_h) * s.imgsz_w);
    const trtbuild::LetterboxInfo info = trtbuild::letterbox(image, s.imgsz_h, s.imgsz_w, input.data());
    std::cout << "classes " << s.numClasses() << " input " << s.input().name << " " << s.imgsz_h << "x" << s.imgsz_w
              << " unpad " << info.unpad_h << "x" << info.unpad_w << " pad " << info.pad_x << "," << info.pad_y
              << " first " << input.front() << "\n";
#ifdef HAVE_TRTBUILD_DETECTOR
    trtbuild::Detector detector(argv[1]);
    const trtbuild::Frame frame{argv[2], std::nullopt, image};
    std::cout << trtbuild::jsonLine(frame, detector.detect(image), s.names) << "\n";
#endif
  } catch (const trtbuild::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exitCode();
  }
  return 0;
}
