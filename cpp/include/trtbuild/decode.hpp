// Decode + NMS exactly like trtbuild/vision/decode.py and nms.py (ultralytics' non_max_suppression semantics):
// the raw YOLOv8 head [4+nc, A] (cx, cy, w, h, per-class scores) or an end-to-end output [K, 6]
// (x1, y1, x2, y2, score, class), boxes returned in original image pixels.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "trtbuild/letterbox.hpp"

namespace trtbuild {

struct Detection {
  std::array<float, 4> box;  // x1, y1, x2, y2 in original image pixels
  float score;
  int class_id;
};
using Detections = std::vector<Detection>;  // highest score first

struct PostprocessOptions {
  double conf = 0.25;   // keep scores > conf (compared in float32, as NumPy 2 compares a float32 array with it)
  double iou = 0.7;     // suppress IoU > iou (float32 IoU against the threshold as torchvision's double compare)
  int max_det = 300;    // at most this many boxes per image
  int max_nms = 30000;  // at most this many candidates (best scores) enter NMS
  bool agnostic = false;     // one NMS over all classes instead of class by class
  bool multi_label = false;  // every class scoring > conf is its own candidate (trtbuild eval's protocol)
};

// One image's raw head output: `channels` (4 + nc) rows of `anchors` floats each, row-major (TensorRT's layout of
// one batch item of [B, 4+nc, A]).
Detections decodeRaw(const float* pred, int channels, int anchors, const LetterboxInfo& info,
                     const PostprocessOptions& options = {});

// One image's end-to-end output: `rows` rows of `cols` (>= 6) floats (x1, y1, x2, y2, score, class) in input
// pixels; rows with score > conf kept in their order, at most max_det.
Detections decodeEnd2End(const float* pred, int rows, int cols, const LetterboxInfo& info,
                         const PostprocessOptions& options = {});

// Greedy NMS on n xyxy boxes (4 floats each): the indices kept, highest score first (torchvision's kept set and
// float32 IoU; ties in score keep their input order). max_keep < 0: no limit.
std::vector<std::size_t> nms(const float* boxes_xyxy, const float* scores, std::size_t n, double iou_threshold,
                             long max_keep = -1);

// The float32 t for which `iou32 > t` equals `iou32 > iou_threshold` computed in double (torchvision).
float iouThresholdF32(double iou_threshold);

}  // namespace trtbuild
