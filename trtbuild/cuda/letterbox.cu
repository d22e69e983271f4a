// Letterbox one uint8 HWC BGR frame straight into a network input: bilinear resize with cv2.resize's
// INTER_LINEAR geometry (half-pixel centres, edge clamp), pad 114, BGR->RGB, HWC->CHW, x/255, written as
// float32 or half at dst (already offset to the batch slot). One thread per output pixel, three channels.
//
// Compiled by trtbuild/cuda/letterbox.py with --fmad=false so every float operation is rounded on its
// own, exactly like its NumPy twin ``reference_letterbox`` (trtbuild/vision/reference.py: same operations, same
// order).
// No header includes: a half is stored as its bits (unsigned short) converted by one PTX instruction, so the
// source needs no CUDA headers and pycuda hashes it for its disk cache without running the preprocessor.

__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(unsigned short *p, float v)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));  // round to nearest even, like __float2half_rn
    *p = h;
}

template <typename T>
__device__ __forceinline__ void letterbox_pixel(
    const unsigned char *__restrict__ src, int src_h, int src_w, int src_pitch,
    T *__restrict__ dst, int dst_h, int dst_w, int top, int left, int nh, int nw,
    float scale_x, float scale_y)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    const size_t plane = (size_t)dst_h * dst_w;
    const size_t o = (size_t)y * dst_w + x;
    const int dx = x - left, dy = y - top;
    if (dx < 0 || dy < 0 || dx >= nw || dy >= nh) {
        const float pad = 114.0f / 255.0f;
        store(dst + o, pad);
        store(dst + plane + o, pad);
        store(dst + 2 * plane + o, pad);
        return;
    }
    // Source coordinate of this pixel's centre, then clamp as OpenCV does (weight 0 on the outside tap).
    float fx = ((float)dx + 0.5f) * scale_x - 0.5f;
    int sx = (int)floorf(fx);
    fx = fx - (float)sx;
    if (sx < 0) { fx = 0.0f; sx = 0; }
    if (sx >= src_w - 1) { fx = 0.0f; sx = src_w - 1; }
    float fy = ((float)dy + 0.5f) * scale_y - 0.5f;
    int sy = (int)floorf(fy);
    fy = fy - (float)sy;
    if (sy < 0) { fy = 0.0f; sy = 0; }
    if (sy >= src_h - 1) { fy = 0.0f; sy = src_h - 1; }
    const int sx1 = min(sx + 1, src_w - 1), sy1 = min(sy + 1, src_h - 1);
    const unsigned char *r0 = src + (size_t)sy * src_pitch;
    const unsigned char *r1 = src + (size_t)sy1 * src_pitch;
    const float wx0 = 1.0f - fx, wy0 = 1.0f - fy;
#pragma unroll
    for (int c = 0; c < 3; ++c) {  // output channel c (R, G, B) reads source channel 2 - c (BGR)
        const int k = 2 - c;
        const float top_row = wx0 * (float)r0[sx * 3 + k] + fx * (float)r0[sx1 * 3 + k];
        const float bottom_row = wx0 * (float)r1[sx * 3 + k] + fx * (float)r1[sx1 * 3 + k];
        float v = wy0 * top_row + fy * bottom_row;
        v = floorf(v + 0.5f);  // the uint8 value of the resized image (cv2.resize returns uint8)
        v = fminf(fmaxf(v, 0.0f), 255.0f);
        store(dst + c * plane + o, v / 255.0f);
    }
}

extern "C" __global__ void letterbox_f32(
    const unsigned char *src, int src_h, int src_w, int src_pitch, float *dst, int dst_h, int dst_w,
    int top, int left, int nh, int nw, float scale_x, float scale_y)
{
    letterbox_pixel<float>(src, src_h, src_w, src_pitch, dst, dst_h, dst_w, top, left, nh, nw, scale_x,
                           scale_y);
}

extern "C" __global__ void letterbox_f16(
    const unsigned char *src, int src_h, int src_w, int src_pitch, unsigned short *dst, int dst_h, int dst_w,
    int top, int left, int nh, int nw, float scale_x, float scale_y)
{
    letterbox_pixel<unsigned short>(src, src_h, src_w, src_pitch, dst, dst_h, dst_w, top, left, nh, nw,
                                    scale_x, scale_y);
}
