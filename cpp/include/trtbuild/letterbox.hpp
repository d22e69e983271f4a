// Letterbox exactly like trtbuild/vision/letterbox.py (and so ultralytics' predictor): scale by the smaller ratio,
// round each side half-to-even (Python's round), split the padding with round(d - 0.1) on the top/left side, pad
// with 114, OpenCV INTER_LINEAR resize, RGB planes of x / 255 in float32, written into a caller's buffer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include <opencv2/core.hpp>

namespace trtbuild {

constexpr int kPadValue = 114;

// Geometry of one letterboxed image: enough to map boxes back to the original pixels.
struct LetterboxInfo {
  double ratio = 1.0;          // resize ratio (new / old) before rounding
  float pad_x = 0, pad_y = 0;  // left and top padding in input pixels
  int orig_h = 0, orig_w = 0;  // the original image
  int new_h = 0, new_w = 0;    // the network input
  int unpad_h = 0, unpad_w = 0;  // the resized image inside the padding

  // Per-axis scale after rounding the resized size (ultralytics' scale_boxes), as float32 like NumPy computes it.
  float gainX() const { return static_cast<float>(static_cast<double>(unpad_w) / orig_w); }
  float gainY() const { return static_cast<float>(static_cast<double>(unpad_h) / orig_h); }
};

// The letterbox geometry of an (orig_h, orig_w) image into (new_h, new_w); Error for an empty image.
LetterboxInfo letterboxInfo(int orig_h, int orig_w, int new_h, int new_w);

// Letterbox a BGR uint8 image (CV_8UC3, any row stride) into dst: 3 * new_h * new_w floats, RGB planes (CHW),
// values x / 255 in 0..1. dst is typically a slot of a pinned host buffer. Thread safe (scratch is per thread).
LetterboxInfo letterbox(const cv::Mat& bgr, int new_h, int new_w, float* dst);

// The same for a raw BGR buffer of h rows of w pixels, row_stride bytes apart (0: tightly packed).
LetterboxInfo letterbox(const std::uint8_t* bgr, int h, int w, std::size_t row_stride, int new_h, int new_w,
                        float* dst);

// Map an xyxy box from network-input pixels back to original pixels, clipped to the image: float32 arithmetic
// in the order of trtbuild's scale_boxes (subtract the padding, divide by the gain, clip to [0, w] / [0, h]).
std::array<float, 4> scaleBox(const std::array<float, 4>& box, const LetterboxInfo& info);

}  // namespace trtbuild
