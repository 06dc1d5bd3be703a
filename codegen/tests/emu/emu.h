// Host emulation of the CUDA/HIP features the fused kernels use, for the codegen tests only:
// one OS thread per GPU thread, std::barrier for __syncthreads and warp-wide exchanges,
// mma.sync.m16n8k16 computed from the fragments of all 32 lanes as the PTX ISA lays them out,
// v_mfma_f32_16x16x16 from all 64 lanes as AMD's CDNA ISA lays them out, grid launches (blocks
// one after another) and the runtime calls the launchers make (device memory is host memory).
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
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

// v_mfma_f32_16x16x16 (f16 or bf16 operands, f32 accumulation) from the 64 lanes' fragments:
// A[m][k] is element k % 4 of lane m + 16 (k / 4), B[k][n] element k % 4 of lane n + 16 (k / 4),
// and lane n + 16 (m / 4) receives D[m][n] as element m % 4.
inline uint16_t mfma_a[64][64][4], mfma_b[64][64][4];
inline void mfma16(const uint16_t* a, const uint16_t* b, float* c, bool bf16) {
  const int w = warp(), l = lane();
  for (int i = 0; i < 4; ++i) {
    mfma_a[w][l][i] = a[i];
    mfma_b[w][l][i] = b[i];
  }
  warp_sync();
  auto val = [&](uint16_t bits) { return bf16 ? bf16_bits(bits) : f16_bits(bits); };
  const int n = l % 16;
  for (int i = 0; i < 4; ++i) {
    const int m = 4 * (l / 16) + i;
    float acc = 0.0f;
    for (int k = 0; k < 16; ++k) acc += val(mfma_a[w][m + 16 * (k / 4)][k % 4]) * val(mfma_b[w][n + 16 * (k / 4)][k % 4]);
    c[i] += acc;
  }
  warp_sync();
}

// Runs `body` as block (bx, by, bz) of `threads` threads.
template <class F>
void run_block(dim3 block_idx, int threads, F body) {
  block_barrier = std::make_unique<std::barrier<>>(threads);
  warp_barriers.clear();
  for (int w = 0; w < (threads + warp_size - 1) / warp_size; ++w)
    warp_barriers.push_back(std::make_unique<std::barrier<>>(warp_size));
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([=] {
      threadIdx = dim3(i);
      blockIdx = block_idx;
      body();
    });
  for (auto& th : pool) th.join();
}

// A kernel launch: every block of the grid, one after another.
template <class F>
void launch(dim3 grid, dim3 block, F body) {
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) run_block(dim3(x, y, z), block.x, body);
}
}  // namespace emu

// The runtime calls of the launchers.
typedef int cudaError_t;
typedef void* cudaStream_t;
constexpr cudaError_t cudaSuccess = 0;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int bytes) { return bytes <= 256 * 1024 ? cudaSuccess : 1; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t n) { *p = std::calloc(n, 1); return *p != nullptr ? cudaSuccess : 2; }
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
typedef int hipError_t;
typedef void* hipStream_t;
constexpr hipError_t hipSuccess = 0;
enum hipFuncAttribute { hipFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline hipError_t hipFuncSetAttribute(const void*, hipFuncAttribute, int bytes) { return bytes <= 64 * 1024 ? hipSuccess : 1; }
inline hipError_t hipGetLastError() { return hipSuccess; }
inline hipError_t hipMalloc(void** p, size_t n) { *p = std::calloc(n, 1); return *p != nullptr ? hipSuccess : 2; }
inline hipError_t hipFree(void* p) { std::free(p); return hipSuccess; }
inline hipError_t hipMemsetAsync(void* p, int v, size_t n, hipStream_t) { std::memset(p, v, n); return hipSuccess; }
#define hipLaunchKernelGGL(kernel, grid, block, smem, stream, ...) emu::launch(grid, block, [&] { kernel(__VA_ARGS__); })

// HIP's vector types (GCC's vector extension in place of clang's ext_vector_type) and the MFMA
// builtins the kernels call.
typedef _Float16 cascade_f16x4 __attribute__((vector_size(8)));
typedef short cascade_bf16x4 __attribute__((vector_size(8)));
typedef float cascade_f32x4 __attribute__((vector_size(16)));
template <class V>
inline cascade_f32x4 emu_mfma(V a, V b, cascade_f32x4 c, bool bf16) {
  uint16_t ab[4], bb[4];
  std::memcpy(ab, &a, 8);
  std::memcpy(bb, &b, 8);
  float acc[4] = {c[0], c[1], c[2], c[3]};
  emu::mfma16(ab, bb, acc, bf16);
  return cascade_f32x4{acc[0], acc[1], acc[2], acc[3]};
}
inline cascade_f32x4 __builtin_amdgcn_mfma_f32_16x16x16f16(cascade_f16x4 a, cascade_f16x4 b, cascade_f32x4 c, int, int, int) { return emu_mfma(a, b, c, false); }
inline cascade_f32x4 __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(cascade_bf16x4 a, cascade_bf16x4 b, cascade_f32x4 c, int, int, int) { return emu_mfma(a, b, c, true); }

inline float __expf(float x) { return std::exp(x); }
using std::exp2f;
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
