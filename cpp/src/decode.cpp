// Decode + NMS, step for step as trtbuild/vision/decode.py (_decode_one, postprocess_end2end) and nms.py, in float32
// with the same order of operations, so the same raw output gives the same boxes and scores bit for bit.
#include "trtbuild/decode.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "trtbuild/error.hpp"

namespace trtbuild {
namespace {

constexpr float kMaxWH = 7680.0f;  // per-class coordinate offset that keeps classes apart in class-aware NMS

// np.minimum / np.maximum: NaN in, NaN out (std::min / std::max would drop it depending on the argument order)
inline float npMin(float a, float b) { return std::isnan(a) || std::isnan(b) ? std::nanf("") : std::min(a, b); }
inline float npMax(float a, float b) { return std::isnan(a) || std::isnan(b) ? std::nanf("") : std::max(a, b); }

void checkThresholds(const PostprocessOptions& o) {
  if (!(o.conf >= 0 && o.conf <= 1) || !(o.iou >= 0 && o.iou <= 1)) {
    throw Error("conf=" + std::to_string(o.conf) + ", iou=" + std::to_string(o.iou) + ": both must lie in [0, 1]");
  }
}

// Candidate (anchor, class, score) triples; anchors in increasing order as np.flatnonzero gives them.
struct Candidates {
  std::vector<int> anchor;
  std::vector<int> class_id;
  std::vector<float> score;
  std::size_t size() const { return score.size(); }
};

}  // namespace

float iouThresholdF32(double iou_threshold) {
  float t = static_cast<float>(iou_threshold);
  if (static_cast<double>(t) > iou_threshold) t = std::nextafter(t, -std::numeric_limits<float>::infinity());
  return t;
}

std::vector<std::size_t> nms(const float* boxes, const float* scores, std::size_t n, double iou_threshold,
                             long max_keep) {
  std::vector<std::size_t> kept;
  const std::size_t limit = max_keep < 0 ? n : std::min<std::size_t>(n, static_cast<std::size_t>(max_keep));
  if (n == 0 || limit == 0) return kept;
  const float thr = iouThresholdF32(iou_threshold);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // np.argsort(-scores, kind="stable"): descending score, ties in input order (NaN scores last, as NumPy sorts NaN)
  std::stable_sort(order.begin(), order.end(), [scores](std::size_t a, std::size_t b) {
    const float sa = -scores[a], sb = -scores[b];
    if (std::isnan(sb)) return !std::isnan(sa);
    return sa < sb;
  });
  std::vector<float> area(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float* b = boxes + 4 * i;
    area[i] = (b[2] - b[0]) * (b[3] - b[1]);
  }
  kept.reserve(limit);
  for (std::size_t idx : order) {
    const float* a = boxes + 4 * idx;
    bool suppressed = false;
    for (std::size_t k : kept) {
      const float* b = boxes + 4 * k;
      // torchvision's order: w = min(x2) - max(x1), h likewise, clamped at 0; inter / (area_a + area_b - inter)
      float w = npMin(b[2], a[2]) - npMax(b[0], a[0]);
      float h = npMin(b[3], a[3]) - npMax(b[1], a[1]);
      w = npMax(w, 0.0f);
      h = npMax(h, 0.0f);
      const float inter = w * h;
      float uni = area[k] + area[idx];
      uni -= inter;
      const float iou = inter / uni;  // 0 / 0 (two empty boxes) is NaN: not an overlap
      if (iou > thr) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) {
      kept.push_back(idx);
      if (kept.size() >= limit) break;
    }
  }
  return kept;
}

Detections decodeRaw(const float* pred, int channels, int anchors, const LetterboxInfo& info,
                     const PostprocessOptions& options) {
  if (channels < 5 || anchors < 0) {
    throw Error("expected a detect output of shape [B, 4+nc, A], got [B, " + std::to_string(channels) + ", " +
                std::to_string(anchors) + "]; pass a YOLOv8 detect model");
  }
  checkThresholds(options);
  const float conf = static_cast<float>(options.conf);
  const int nc = channels - 4;
  const bool multi_label = options.multi_label && nc > 1;  // as ultralytics: only with more than one class
  const float* cls = pred + 4 * static_cast<std::size_t>(anchors);
  auto score_at = [&](int c, int a) { return cls[static_cast<std::size_t>(c) * anchors + a]; };

  // best score per anchor (NaN if any class score is NaN, as ndarray.max), first arg-max class
  Candidates cand;
  for (int a = 0; a < anchors; ++a) {
    float best = score_at(0, a);
    int best_c = 0;
    bool nan = std::isnan(best);
    for (int c = 1; c < nc && !nan; ++c) {
      const float v = score_at(c, a);
      if (std::isnan(v)) {
        nan = true;
      } else if (v > best) {
        best = v;
        best_c = c;
      }
    }
    if (nan || !(best > conf)) continue;
    if (multi_label) {  // every class > conf of this anchor, anchor-major like np.nonzero(sub.T > conf)
      for (int c = 0; c < nc; ++c) {
        const float v = score_at(c, a);
        if (v > conf) {
          cand.anchor.push_back(a);
          cand.class_id.push_back(c);
          cand.score.push_back(v);
        }
      }
    } else {
      cand.anchor.push_back(a);
      cand.class_id.push_back(best_c);
      cand.score.push_back(best);
    }
  }
  Detections out;
  std::size_t n = cand.size();
  if (n == 0) return out;

  std::vector<std::size_t> pick(n);
  std::iota(pick.begin(), pick.end(), 0);
  if (options.max_nms >= 0 && n > static_cast<std::size_t>(options.max_nms)) {  // the max_nms best candidates
    std::stable_sort(pick.begin(), pick.end(),
                     [&](std::size_t x, std::size_t y) { return -cand.score[x] < -cand.score[y]; });
    pick.resize(static_cast<std::size_t>(options.max_nms));
    n = pick.size();
  }
  std::vector<float> boxes(4 * n), shifted(4 * n), scores(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t j = pick[i];
    const int a = cand.anchor[j];
    const float cx = pred[a], cy = pred[static_cast<std::size_t>(anchors) + a];
    const float w = pred[2 * static_cast<std::size_t>(anchors) + a];
    const float h = pred[3 * static_cast<std::size_t>(anchors) + a];
    const float hw = w / 2.0f, hh = h / 2.0f;
    float* b = &boxes[4 * i];
    b[0] = cx - hw;
    b[1] = cy - hh;
    b[2] = cx + hw;
    b[3] = cy + hh;
    const float offset = static_cast<float>(cand.class_id[j]) * (options.agnostic ? 0.0f : kMaxWH);
    for (int k = 0; k < 4; ++k) shifted[4 * i + k] = b[k] + offset;
    scores[i] = cand.score[j];
  }
  const std::vector<std::size_t> kept = nms(shifted.data(), scores.data(), n, options.iou, options.max_det);
  out.reserve(kept.size());
  for (std::size_t i : kept) {
    const float* b = &boxes[4 * i];
    out.push_back({scaleBox({b[0], b[1], b[2], b[3]}, info), scores[i], cand.class_id[pick[i]]});
  }
  return out;
}

Detections decodeEnd2End(const float* pred, int rows, int cols, const LetterboxInfo& info,
                         const PostprocessOptions& options) {
  if (cols < 6 || rows < 0) {
    throw Error("expected an end-to-end output of shape [B, K, 6], got [B, " + std::to_string(rows) + ", " +
                std::to_string(cols) + "]");
  }
  const float conf = static_cast<float>(options.conf);
  Detections out;
  for (int r = 0; r < rows && static_cast<int>(out.size()) < options.max_det; ++r) {
    const float* p = pred + static_cast<std::size_t>(r) * cols;
    if (!(p[4] > conf)) continue;
    // astype(int64): truncation toward zero
    out.push_back({scaleBox({p[0], p[1], p[2], p[3]}, info), p[4], static_cast<int>(std::trunc(p[5]))});
  }
  return out;
}

}  // namespace trtbuild
