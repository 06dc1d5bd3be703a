// Host emulation of the CUDA/HIP features the fused kernel uses, for the codegen tests only:
// one OS thread per GPU thread, std::barrier for __syncthreads and warp-wide exchanges, and
// mma.sync.m16n8k16 computed from the fragments of all 32 lanes as the PTX ISA lays them out.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;

struct uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }

namespace emu {
inline int warp_size = 32;
inline int mma_fp16 = 0;  // 0: bf16 operands, 1: fp16 operands
inline std::unique_ptr<std::barrier<>> block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline float xchg[64][64];
inline uint32_t mma_a[64][64][4], mma_b[64][64][2];

inline int lane() { return threadIdx.x % warp_size; }
inline int warp() { return threadIdx.x / warp_size; }
inline void warp_sync() { warp_barriers[warp()]->arrive_and_wait(); }

inline float exchange_xor(float x, int o) {
  xchg[warp()][lane()] = x;
  warp_sync();
  const float r = xchg[warp()][lane() ^ o];
  warp_sync();
  return r;
}

inline float bf16_bits(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t bf16_round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}
inline float f16_bits(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return float(h);
}
inline float half_of(uint32_t reg, int hi) {
  const uint16_t b = uint16_t(hi ? reg >> 16 : reg & 0xffff);
  return mma_fp16 ? f16_bits(b) : bf16_bits(b);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: lane (g = lane/4, t = lane%4) holds
// A rows g / g+8, columns 2t.. / 2t+8..; B column g, rows 2t.. / 2t+8..; C rows g / g+8, columns 2t, 2t+1.
// Lanes 32..63 of a 64-wide emulated warp never call it (the MMA path is CUDA-only).
inline void mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  const int w = warp(), l = lane();
  for (int r = 0; r < 4; ++r) mma_a[w][l][r] = a[r];
  mma_b[w][l][0] = b0;
  mma_b[w][l][1] = b1;
  warp_sync();
  float A[16][16], B[16][8];
  for (int q = 0; q < 32; ++q) {
    const int g = q / 4, t = q % 4;
    for (int r = 0; r < 4; ++r) {
      const int row = g + (r & 1) * 8, col = 2 * t + (r >> 1) * 8;
      A[row][col] = half_of(mma_a[w][q][r], 0);
      A[row][col + 1] = half_of(mma_a[w][q][r], 1);
    }
    for (int r = 0; r < 2; ++r) {
      B[2 * t + r * 8][g] = half_of(mma_b[w][q][r], 0);
      B[2 * t + r * 8 + 1][g] = half_of(mma_b[w][q][r], 1);
    }
  }
  const int g = l / 4, t = l % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
    float acc = 0.0f;
    for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
    c[i] += acc;
  }
  warp_sync();
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane l addresses row l % 8 of matrix l / 8;
// r[i] gets row l / 4, columns 2(l % 4)..+1 of matrix i (of its transpose with .trans).
inline const void* ldsm_rows[64][64];
inline void ldmatrix(uint32_t* r, const void* p, bool trans) {
  const int w = warp(), l = lane();
  ldsm_rows[w][l] = p;
  warp_sync();
  const int g = l / 4, t = l % 4;
  auto at = [&](int m, int row, int col) { return static_cast<const uint16_t*>(ldsm_rows[w][m * 8 + row])[col]; };
  for (int m = 0; m < 4; ++m) {
    const uint16_t lo = trans ? at(m, 2 * t, g) : at(m, g, 2 * t);
    const uint16_t hi = trans ? at(m, 2 * t + 1, g) : at(m, g, 2 * t + 1);
    r[m] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
  warp_sync();
}

inline void copy16(void* dst, const void* src, bool valid) {
  if (valid) std::memcpy(dst, src, 16);
  else std::memset(dst, 0, 16);
}

// Runs `body` as one block of `threads` threads.
template <class F>
void run_block(unsigned bx, unsigned by, int threads, F body) {
  block_barrier = std::make_unique<std::barrier<>>(threads);
  warp_barriers.clear();
  for (int w = 0; w < (threads + warp_size - 1) / warp_size; ++w)
    warp_barriers.push_back(std::make_unique<std::barrier<>>(warp_size));
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([=] {
      threadIdx = dim3(i);
      blockIdx = dim3(bx, by);
      body();
    });
  for (auto& th : pool) th.join();
}
}  // namespace emu

inline float __expf(float x) { return std::exp(x); }
inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float x, int o) { return emu::exchange_xor(x, o); }
inline float __shfl_xor(float x, int o) { return emu::exchange_xor(x, o); }

// CUDA 16-bit types.
struct __nv_bfloat16 { uint16_t bits; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
inline float __bfloat162float(__nv_bfloat16 h) { return emu::bf16_bits(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {emu::bf16_round(f)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
struct __half { _Float16 v; };
struct __half2 { __half x, y; };
inline float __half2float(__half h) { return float(h.v); }
inline __half __float2half_rn(float f) { return {static_cast<_Float16>(f)}; }
inline __half __float2half(float f) { return {static_cast<_Float16>(f)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
// HIP's bfloat16.
struct hip_bfloat16 {
  uint16_t data;
  hip_bfloat16() = default;
  explicit hip_bfloat16(float f) : data(emu::bf16_round(f)) {}
  operator float() const { return emu::bf16_bits(data); }
};
