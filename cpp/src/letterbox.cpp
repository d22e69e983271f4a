// Letterbox, the same three OpenCV passes as trtbuild/vision/letterbox.py: resize (INTER_LINEAR, OpenCV's
// bit-exact 8-bit path), split into B, G, R planes, the exact float32 x / 255 table, then the 114 / 255 fill of
// the padding. Geometry with Python's round (half to even): std::nearbyint in the default rounding mode.
#include "trtbuild/letterbox.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include <opencv2/imgproc.hpp>

#include "trtbuild/error.hpp"

namespace trtbuild {
namespace {

// x / 255 rounded to float32 for every uint8 x (NumPy: arange(256, float32) / float32(255)).
struct UnitTable {
  float v[256];
  UnitTable() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
const UnitTable& unitTable() {
  static const UnitTable table;
  return table;
}

long pyRound(double x) { return static_cast<long>(std::nearbyint(x)); }  // round half to even, like Python

}  // namespace

LetterboxInfo letterboxInfo(int orig_h, int orig_w, int new_h, int new_w) {
  if (orig_h <= 0 || orig_w <= 0) {
    throw Error("cannot letterbox an empty image of shape (" + std::to_string(orig_h) + ", " +
                std::to_string(orig_w) + ")");
  }
  if (new_h <= 0 || new_w <= 0) {
    throw Error("cannot letterbox into an input of size " + std::to_string(new_h) + "x" + std::to_string(new_w));
  }
  LetterboxInfo info;
  const double r = std::min(static_cast<double>(new_h) / orig_h, static_cast<double>(new_w) / orig_w);
  const long nw = std::max(pyRound(orig_w * r), 1L);
  const long nh = std::max(pyRound(orig_h * r), 1L);
  info.ratio = r;
  info.pad_x = static_cast<float>(pyRound((new_w - nw) / 2.0 - 0.1));
  info.pad_y = static_cast<float>(pyRound((new_h - nh) / 2.0 - 0.1));
  info.orig_h = orig_h;
  info.orig_w = orig_w;
  info.new_h = new_h;
  info.new_w = new_w;
  info.unpad_h = static_cast<int>(nh);
  info.unpad_w = static_cast<int>(nw);
  return info;
}

LetterboxInfo letterbox(const cv::Mat& bgr, int new_h, int new_w, float* dst) {
  if (bgr.empty() || bgr.type() != CV_8UC3) {
    throw Error("expected a BGR uint8 image (CV_8UC3), got " +
                (bgr.empty() ? std::string("an empty image") : "an image of type " + std::to_string(bgr.type())));
  }
  if (dst == nullptr) throw Error("letterbox: the destination buffer is null");
  const LetterboxInfo info = letterboxInfo(bgr.rows, bgr.cols, new_h, new_w);
  const int nh = info.unpad_h, nw = info.unpad_w;
  const int left = static_cast<int>(info.pad_x), top = static_cast<int>(info.pad_y);

  thread_local cv::Mat resized;
  thread_local cv::Mat planes[3];
  const cv::Mat* src = &bgr;
  if (bgr.rows != nh || bgr.cols != nw) {
    cv::resize(bgr, resized, cv::Size(nw, nh), 0, 0, cv::INTER_LINEAR);
    src = &resized;
  }
  cv::split(*src, planes);  // B, G, R

  const float* table = unitTable().v;
  const float pad = table[kPadValue];
  const std::size_t plane = static_cast<std::size_t>(new_h) * new_w;
  for (int c = 0; c < 3; ++c) {
    const cv::Mat& p = planes[2 - c];  // channel c of the output is R, G, B
    float* out = dst + c * plane;
    std::fill(out, out + static_cast<std::size_t>(top) * new_w, pad);
    for (int y = 0; y < nh; ++y) {
      float* row = out + static_cast<std::size_t>(top + y) * new_w;
      const std::uint8_t* in = p.ptr<std::uint8_t>(y);
      std::fill(row, row + left, pad);
      for (int x = 0; x < nw; ++x) row[left + x] = table[in[x]];
      std::fill(row + left + nw, row + new_w, pad);
    }
    std::fill(out + static_cast<std::size_t>(top + nh) * new_w, out + plane, pad);
  }
  return info;
}

LetterboxInfo letterbox(const std::uint8_t* bgr, int h, int w, std::size_t row_stride, int new_h, int new_w,
                        float* dst) {
  if (bgr == nullptr) throw Error("letterbox: the image buffer is null");
  const cv::Mat header(h, w, CV_8UC3, const_cast<std::uint8_t*>(bgr),
                       row_stride ? row_stride : static_cast<std::size_t>(cv::Mat::AUTO_STEP));
  return letterbox(header, new_h, new_w, dst);
}

std::array<float, 4> scaleBox(const std::array<float, 4>& box, const LetterboxInfo& info) {
  const float gx = info.gainX(), gy = info.gainY();
  const float w = static_cast<float>(info.orig_w), h = static_cast<float>(info.orig_h);
  std::array<float, 4> out;
  for (int i = 0; i < 4; ++i) {
    const bool is_x = (i % 2) == 0;
    float v = box[i];
    v -= is_x ? info.pad_x : info.pad_y;
    v /= is_x ? gx : gy;
    // np.minimum(np.maximum(v, 0), w): NaN stays NaN (std::max / std::min return their first argument then)
    v = std::max(v, 0.0f);
    v = std::min(v, is_x ? w : h);
    out[i] = v;
  }
  return out;
}

}  // namespace trtbuild
