//! The one table of CUDA-vs-HIP-vs-C++ differences: every decision that depends on the target
//! reads a field here, so plan code and templates never branch on the target.

use std::fmt;

use crate::DType;

/// What the generated source is compiled by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Cuda,
    Hip,
    /// Plain C++17, for checking a plan's numerics without a GPU.
    Cpp,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Cuda, Target::Hip, Target::Cpp];

    pub fn name(self) -> &'static str {
        match self {
            Target::Cuda => "cuda",
            Target::Hip => "hip",
            Target::Cpp => "cpp",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The instructions of the fused kernel's two matrix products, which fix how a warp's lanes
/// own the score and output fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatrixPath {
    /// `mma.sync.aligned.m16n8k16` with f32 accumulation (NVIDIA sm_80 and later).
    MmaM16n8k16,
    /// `v_mfma_f32_16x16x16_{f16,bf16}` (AMD CDNA, gfx90a and gfx942, wave64).
    Mfma16x16x16,
    /// Scalar FMAs that give each lane the fragment an m16n8k16 MMA would (any warp width).
    Simt,
    /// The C++ target's host loops.
    Scalar,
}

impl MatrixPath {
    pub fn name(self) -> &'static str {
        match self {
            MatrixPath::MmaM16n8k16 => "mma.sync.m16n8k16",
            MatrixPath::Mfma16x16x16 => "mfma.16x16x16",
            MatrixPath::Simt => "simt",
            MatrixPath::Scalar => "scalar",
        }
    }
}

/// Spellings and capabilities that differ between targets. Text fields are pasted verbatim by
/// templates; the others are what plan code decides from.
#[derive(Debug, Clone)]
pub struct TargetDialect {
    pub target: Target,
    /// Element types the target computes with; others are a schedule error.
    pub dtypes: &'static [DType],
    /// The fused kernel runs warps of lanes in lockstep: each warp owns `rows_per_warp` query
    /// rows and key/value tiles are double-buffered, so `block_m` and `stages` are fixed by the
    /// warp count. A host loop (C++) takes any `block_m`.
    pub lockstep_warps: bool,
    /// `(warps, block_n)` pairs [`crate::GpuSchedule::suggested`] tries in order for the
    /// tensor-core path and for the scalar one; the first whose tiles fit is suggested.
    pub tile_preferences: &'static [(u32, u32)],
    pub scalar_tile_preferences: &'static [(u32, u32)],
    /// Registers of one multiprocessor (compute unit), the most one thread may use, shared
    /// memory per multiprocessor and resident threads per multiprocessor: what the
    /// occupancy-aware plan divides among blocks.
    pub regs_per_sm: u32,
    pub max_regs_per_thread: u32,
    pub smem_per_sm: u32,
    pub max_threads_per_sm: u32,
    /// Blocks the split-K launcher aims to fill the device with (about two per multiprocessor
    /// of a large part).
    pub target_blocks: u32,
    /// Rows are copied in granules of this many bytes, so feature sizes and strides must be
    /// multiples of it (16: one `cp.async` / 128-bit access).
    pub row_granule_bytes: u32,
    /// The launcher's last ABI parameter (the stream), or `None` where there is none.
    pub stream_param: Option<&'static str>,
    /// The launcher's workspace parameters (before the stream), or `None` where scratch is
    /// host memory the launcher allocates itself.
    pub workspace_params: Option<&'static str>,
    /// A kernel launch with `{kernel}`, `{grid}`, `{block}`, `{smem}` and `{args}` placeholders.
    pub launch_format: &'static str,
    /// Definition of `float cascade_exp2(float)`, the fused kernel's softmax exponential
    /// (`2^x`, the scores carrying log₂e).
    pub exp2_def: &'static str,
    /// Vector types of the matrix builtins (HIP's `ext_vector_type`s), empty elsewhere.
    pub vector_types_def: &'static str,
    /// Lanes that execute in lockstep: 32 on NVIDIA, 64 on CDNA (gfx90a, gfx942), 1 on a CPU.
    pub warp_size: u32,
    /// `#include` lines of the runtime and the 16-bit float types.
    pub includes: &'static str,
    /// Qualifier of helper functions callable from kernels.
    pub device_fn: &'static str,
    /// Qualifier of a kernel entry point.
    pub kernel_qualifier: &'static str,
    /// How a generic kernel takes its context: by value on a device, by reference on the host.
    pub ctx_param: &'static str,
    /// Stream type of the launcher's last argument.
    pub stream_type: &'static str,
    /// `__shfl_xor_sync(0xffffffff, x, o)` / `__shfl_xor(x, o)`: the `x, o` follow this prefix.
    pub shfl_xor_prefix: &'static str,
    pub malloc: &'static str,
    pub free: &'static str,
    pub memset: &'static str,
    pub memcpy_d2d: &'static str,
    pub get_last_error: &'static str,
    pub success: &'static str,
    /// Raises a kernel's dynamic shared-memory limit: `(kernel, bytes)` follow.
    pub set_max_dynamic_smem: &'static str,
    /// A 16-byte global→shared copy that overlaps compute where the hardware can (`cp.async`),
    /// and its group fence; on HIP these are a plain copy and no-ops.
    pub async_copy_16: &'static str,
    pub async_commit: &'static str,
    pub async_wait_prev: &'static str,
    /// Definition of the helper named by `async_copy_16`.
    pub async_copy_def: &'static str,
    /// Opens and closes the per-point loop of a generic kernel (one thread per point on a GPU).
    pub point_loop_open: &'static str,
    pub point_loop_close: &'static str,
    /// Name of the attribute that raises the dynamic shared-memory limit.
    pub smem_attribute: &'static str,
    /// Largest shared memory (LDS) one block may use, in bytes.
    pub max_smem_bytes: u32,
    /// Compiler and flags of the README build line.
    pub build_line: &'static str,
    /// Extension of the generated source.
    pub extension: &'static str,
}

/// Per-data-type spellings on one target.
#[derive(Debug, Clone)]
pub struct TypeDialect {
    /// Element type of inputs and outputs.
    pub elem: &'static str,
    /// Converts one element to `float` (function name).
    pub to_float: &'static str,
    /// Converts a `float` to one element (function name).
    pub from_float: &'static str,
    /// Packs two floats into one 32-bit register of two elements (tensor-core operands).
    pub pack2: &'static str,
    /// PTX type of the `mma.sync` operands (`bf16`, `f16`), empty where no MMA exists.
    pub mma_ptx_type: &'static str,
    /// The matrix instructions of the fused kernel for this element type.
    pub matrix: MatrixPath,
    /// The MFMA builtin and its operand vector type (HIP), empty elsewhere.
    pub mfma_builtin: &'static str,
    pub mfma_operand: &'static str,
    /// Definition of `cascade_mfma_elem(float)`, one operand element of the MFMA (HIP).
    pub mfma_elem_def: &'static str,
}

impl TargetDialect {
    pub fn of(target: Target) -> TargetDialect {
        match target {
            Target::Cuda => TargetDialect {
                target,
                dtypes: &[DType::F16, DType::Bf16, DType::F32],
                lockstep_warps: true,
                // 128 query rows per block where 8 warps' tiles fit (FlashAttention-2's tile).
                tile_preferences: &[
                    (8, 64),
                    (8, 32),
                    (4, 64),
                    (4, 32),
                    (4, 16),
                    (2, 16),
                    (1, 16),
                ],
                scalar_tile_preferences: &[(4, 32), (2, 32), (2, 16), (1, 16)],
                regs_per_sm: 65536,
                max_regs_per_thread: 255,
                // sm_80's 164 KiB (sm_90's 228 KiB holds more, but one binary runs on both).
                smem_per_sm: 164 * 1024,
                max_threads_per_sm: 2048,
                target_blocks: 264,
                row_granule_bytes: 16,
                stream_param: Some("void* stream_ptr"),
                workspace_params: Some("void* workspace, unsigned long long workspace_bytes"),
                launch_format: "{kernel}<<<{grid}, {block}, {smem}, stream>>>({args});",
                exp2_def: "[[maybe_unused]] static __device__ __forceinline__ float cascade_exp2(float x) {\n  // ex2.approx flushes denormals; the exponents here are <= 0 and underflow to 0 anyway.\n  float r;\n  asm(\"ex2.approx.ftz.f32 %0, %1;\" : \"=f\"(r) : \"f\"(x));\n  return r;\n}",
                vector_types_def: "",
                warp_size: 32,
                includes: "#include <cuda_runtime.h>\n#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n#include <math.h>\n#include <stdint.h>",
                device_fn: "[[maybe_unused]] static __device__ __forceinline__",
                kernel_qualifier: "__global__",
                ctx_param: "Ctx c",
                stream_type: "cudaStream_t",
                shfl_xor_prefix: "__shfl_xor_sync(0xffffffffu, ",
                malloc: "cudaMalloc",
                free: "cudaFree",
                memset: "cudaMemsetAsync",
                memcpy_d2d: "cudaMemcpyAsync",
                get_last_error: "cudaGetLastError()",
                success: "cudaSuccess",
                set_max_dynamic_smem: "cudaFuncSetAttribute((const void*)",
                async_copy_16: "cascade_cp_async_16",
                async_commit: "asm volatile(\"cp.async.commit_group;\\n\" ::)",
                async_wait_prev: "asm volatile(\"cp.async.wait_group 1;\\n\" ::)",
                async_copy_def: "[[maybe_unused]] static __device__ __forceinline__ void cascade_cp_async_16(void* dst, const void* src, bool valid) {\n  const unsigned dst_s = static_cast<unsigned>(__cvta_generic_to_shared(dst));\n  const int n = valid ? 16 : 0;  // 0 source bytes: zero-fill the 16 bytes\n  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16, %2;\\n\" ::\"r\"(dst_s), \"l\"(src), \"r\"(n));\n}",
                point_loop_open: "const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;\n  if (idx < n_points) {",
                point_loop_close: "}",
                smem_attribute: "cudaFuncAttributeMaxDynamicSharedMemorySize",
                max_smem_bytes: 163 * 1024,
                build_line: "nvcc -O3 -std=c++17 -arch=sm_80 -Xcompiler -fPIC -shared",
                extension: "cu",
            },
            Target::Hip => TargetDialect {
                target,
                dtypes: &[DType::F16, DType::Bf16, DType::F32],
                lockstep_warps: true,
                // 64 KiB of LDS: 8 waves (128 rows) at head dim 64, 4 waves and 32-key stages at 128.
                tile_preferences: &[
                    (8, 64),
                    (8, 32),
                    (4, 64),
                    (4, 32),
                    (4, 16),
                    (2, 16),
                    (1, 16),
                ],
                scalar_tile_preferences: &[(2, 32), (2, 16), (1, 16)],
                regs_per_sm: 131072,
                max_regs_per_thread: 512,
                smem_per_sm: 64 * 1024,
                max_threads_per_sm: 2048,
                target_blocks: 608,
                row_granule_bytes: 16,
                stream_param: Some("void* stream_ptr"),
                workspace_params: Some("void* workspace, unsigned long long workspace_bytes"),
                launch_format: "hipLaunchKernelGGL({kernel}, {grid}, {block}, {smem}, stream, {args});",
                exp2_def: "[[maybe_unused]] static __device__ __forceinline__ float cascade_exp2(float x) { return exp2f(x); }",
                vector_types_def: "typedef _Float16 cascade_f16x4 __attribute__((ext_vector_type(4)));\ntypedef short cascade_bf16x4 __attribute__((ext_vector_type(4)));\ntypedef float cascade_f32x4 __attribute__((ext_vector_type(4)));",
                warp_size: 64,
                includes: "#include <hip/hip_runtime.h>\n#include <hip/hip_fp16.h>\n#include <hip/hip_bfloat16.h>\n#include <math.h>\n#include <stdint.h>",
                device_fn: "[[maybe_unused]] static __device__ __forceinline__",
                kernel_qualifier: "__global__",
                ctx_param: "Ctx c",
                stream_type: "hipStream_t",
                shfl_xor_prefix: "__shfl_xor(",
                malloc: "hipMalloc",
                free: "hipFree",
                memset: "hipMemsetAsync",
                memcpy_d2d: "hipMemcpyAsync",
                get_last_error: "hipGetLastError()",
                success: "hipSuccess",
                set_max_dynamic_smem: "hipFuncSetAttribute((const void*)",
                async_copy_16: "cascade_copy_16",
                async_commit: "(void)0",
                async_wait_prev: "(void)0",
                async_copy_def: "[[maybe_unused]] static __device__ __forceinline__ void cascade_copy_16(void* dst, const void* src, bool valid) {\n  // No asynchronous global-to-LDS copy here: a plain 16-byte copy, zero-filled when invalid.\n  *static_cast<uint4*>(dst) = valid ? *static_cast<const uint4*>(src) : make_uint4(0, 0, 0, 0);\n}",
                point_loop_open: "const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;\n  if (idx < n_points) {",
                point_loop_close: "}",
                smem_attribute: "hipFuncAttributeMaxDynamicSharedMemorySize",
                max_smem_bytes: 64 * 1024,
                // hipcc picks its platform from what it finds on PATH (nvcc makes it try CUDA).
                build_line: "HIP_PLATFORM=amd hipcc -O3 -std=c++17 --offload-arch=gfx90a -fPIC -shared",
                extension: "hip",
            },
            Target::Cpp => TargetDialect {
                target,
                dtypes: &[DType::F32],
                lockstep_warps: false,
                tile_preferences: &[(4, 64)],
                scalar_tile_preferences: &[(4, 64)],
                regs_per_sm: u32::MAX,
                max_regs_per_thread: u32::MAX,
                smem_per_sm: u32::MAX,
                max_threads_per_sm: u32::MAX,
                target_blocks: 16,
                row_granule_bytes: 4,
                stream_param: None,
                workspace_params: None,
                launch_format: "{kernel}({args});",
                exp2_def: "[[maybe_unused]] static inline float cascade_exp2(float x) { return std::exp2(x); }",
                vector_types_def: "",
                warp_size: 1,
                includes: "#include <algorithm>\n#include <cmath>\n#include <cstdint>\n#include <cstring>\n#include <vector>",
                device_fn: "[[maybe_unused]] static inline",
                kernel_qualifier: "static",
                ctx_param: "const Ctx& c",
                stream_type: "void*",
                shfl_xor_prefix: "",
                malloc: "",
                free: "",
                memset: "",
                memcpy_d2d: "",
                get_last_error: "",
                success: "",
                set_max_dynamic_smem: "",
                async_copy_16: "",
                async_commit: "",
                async_wait_prev: "",
                async_copy_def: "",
                point_loop_open: "for (long long idx = 0; idx < n_points; ++idx) {",
                point_loop_close: "}",
                smem_attribute: "",
                max_smem_bytes: u32::MAX,
                build_line: "g++ -O2 -std=c++17 -fPIC -shared",
                extension: "cpp",
            },
        }
    }

    /// The statement that launches `kernel` (CUDA chevrons, `hipLaunchKernelGGL`, a call).
    pub fn launch(&self, kernel: &str, grid: &str, block: &str, smem: &str, args: &str) -> String {
        self.launch_format
            .replace("{kernel}", kernel)
            .replace("{grid}", grid)
            .replace("{block}", block)
            .replace("{smem}", smem)
            .replace("{args}", args)
    }

    /// Query rows each warp of the fused kernel owns: 16 per MFMA wave (its lanes split the
    /// keys), else one 16-row slice per 32 lanes.
    pub fn rows_per_warp(&self, dtype: DType) -> u32 {
        match TargetDialect::types(self.target, dtype).matrix {
            MatrixPath::Mfma16x16x16 => 16,
            _ if self.warp_size >= 32 => 16 * self.warp_size / 32,
            _ => 16,
        }
    }

    /// Spellings for one element type on this target.
    pub fn types(target: Target, dtype: DType) -> TypeDialect {
        match (target, dtype) {
            (Target::Cpp, _) => TypeDialect {
                matrix: MatrixPath::Scalar,
                ..TargetDialect::types(Target::Cuda, DType::F32)
            },
            (_, DType::F32) => TypeDialect {
                elem: "float",
                to_float: "cascade_f32_to_float",
                from_float: "cascade_float_to_f32",
                pack2: "",
                mma_ptx_type: "",
                matrix: MatrixPath::Simt,
                mfma_builtin: "",
                mfma_operand: "",
                mfma_elem_def: "",
            },
            (Target::Cuda, DType::F16) => TypeDialect {
                elem: "__half",
                to_float: "__half2float",
                from_float: "__float2half_rn",
                pack2: "__floats2half2_rn",
                mma_ptx_type: "f16",
                matrix: MatrixPath::MmaM16n8k16,
                mfma_builtin: "",
                mfma_operand: "",
                mfma_elem_def: "",
            },
            (Target::Cuda, DType::Bf16) => TypeDialect {
                elem: "__nv_bfloat16",
                to_float: "__bfloat162float",
                from_float: "__float2bfloat16_rn",
                pack2: "__floats2bfloat162_rn",
                mma_ptx_type: "bf16",
                matrix: MatrixPath::MmaM16n8k16,
                mfma_builtin: "",
                mfma_operand: "",
                mfma_elem_def: "",
            },
            (Target::Hip, DType::F16) => TypeDialect {
                elem: "__half",
                to_float: "__half2float",
                from_float: "__float2half",
                pack2: "",
                mma_ptx_type: "",
                matrix: MatrixPath::Mfma16x16x16,
                mfma_builtin: "__builtin_amdgcn_mfma_f32_16x16x16f16",
                mfma_operand: "cascade_f16x4",
                mfma_elem_def: "[[maybe_unused]] static __device__ __forceinline__ _Float16 cascade_mfma_elem(float x) { return static_cast<_Float16>(x); }",
            },
            (Target::Hip, DType::Bf16) => TypeDialect {
                elem: "hip_bfloat16",
                to_float: "static_cast<float>",
                from_float: "hip_bfloat16",
                pack2: "",
                mma_ptx_type: "",
                matrix: MatrixPath::Mfma16x16x16,
                // The `_1k` form (gfx90a and later) takes four bf16 per lane, like f16.
                mfma_builtin: "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
                mfma_operand: "cascade_bf16x4",
                mfma_elem_def: "[[maybe_unused]] static __device__ __forceinline__ short cascade_mfma_elem(float x) { return static_cast<short>(hip_bfloat16(x).data); }",
            },
        }
    }
}
