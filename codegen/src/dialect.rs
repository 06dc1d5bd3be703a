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
    /// Name of the fused kernel's matrix path when the element type has no tensor-core MMA.
    pub plain_matrix_path: &'static str,
    /// `(warps, block_n for 4-byte elements, block_n for 2-byte elements)` of
    /// [`crate::GpuSchedule::suggested`]: tiles that fit the target's shared memory.
    pub suggested_tiles: (u32, u32, u32),
    /// The launcher's last ABI parameter (the stream), or `None` where there is none.
    pub stream_param: Option<&'static str>,
    /// A kernel launch with `{kernel}`, `{grid}`, `{block}`, `{smem}` and `{args}` placeholders.
    pub launch_format: &'static str,
    /// The fast single-precision exponential of the fused kernel's softmax.
    pub fast_exp: &'static str,
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
}

impl TargetDialect {
    pub fn of(target: Target) -> TargetDialect {
        match target {
            Target::Cuda => TargetDialect {
                target,
                dtypes: &[DType::F16, DType::Bf16, DType::F32],
                lockstep_warps: true,
                plain_matrix_path: "simt",
                suggested_tiles: (4, 32, 64),
                stream_param: Some("void* stream_ptr"),
                launch_format: "{kernel}<<<{grid}, {block}, {smem}, stream>>>({args});",
                fast_exp: "__expf",
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
                plain_matrix_path: "simt",
                // 64 KiB of LDS holds a 64-row query tile and two 32-key stages at head dim 128.
                suggested_tiles: (2, 32, 32),
                stream_param: Some("void* stream_ptr"),
                launch_format: "hipLaunchKernelGGL({kernel}, {grid}, {block}, {smem}, stream, {args});",
                fast_exp: "__expf",
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
                build_line: "hipcc -O3 -std=c++17 --offload-arch=gfx90a -fPIC -shared",
                extension: "hip",
            },
            Target::Cpp => TargetDialect {
                target,
                dtypes: &[DType::F32],
                lockstep_warps: false,
                plain_matrix_path: "scalar",
                suggested_tiles: (4, 64, 64),
                stream_param: None,
                launch_format: "{kernel}({args});",
                fast_exp: "std::exp",
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

    /// Query rows each warp of the fused kernel owns: one 16-row MMA slice per 32 lanes.
    pub fn rows_per_warp(&self) -> u32 {
        if self.warp_size >= 32 {
            16 * self.warp_size / 32
        } else {
            16
        }
    }

    /// `block_n` that fits this target's shared memory for `dtype`.
    pub fn suggested_block_n(&self, dtype: DType) -> u32 {
        let (_, wide, narrow) = self.suggested_tiles;
        if dtype.bytes() >= 4 { wide } else { narrow }
    }

    /// Spellings for one element type on this target.
    pub fn types(target: Target, dtype: DType) -> TypeDialect {
        match (target, dtype) {
            (_, DType::F32) => TypeDialect {
                elem: "float",
                to_float: "cascade_f32_to_float",
                from_float: "cascade_float_to_f32",
                pack2: "",
                mma_ptx_type: "",
            },
            (Target::Cuda, DType::F16) => TypeDialect {
                elem: "__half",
                to_float: "__half2float",
                from_float: "__float2half_rn",
                pack2: "__floats2half2_rn",
                mma_ptx_type: "f16",
            },
            (Target::Cuda, DType::Bf16) => TypeDialect {
                elem: "__nv_bfloat16",
                to_float: "__bfloat162float",
                from_float: "__float2bfloat16_rn",
                pack2: "__floats2bfloat162_rn",
                mma_ptx_type: "bf16",
            },
            (Target::Hip, DType::F16) => TypeDialect {
                elem: "__half",
                to_float: "__half2float",
                from_float: "__float2half",
                pack2: "",
                mma_ptx_type: "",
            },
            (Target::Hip, DType::Bf16) => TypeDialect {
                elem: "hip_bfloat16",
                to_float: "static_cast<float>",
                from_float: "hip_bfloat16",
                pack2: "",
                mma_ptx_type: "",
            },
            // The C++ target computes in f32 only; `plan` rejects other types before this.
            (Target::Cpp, _) => TypeDialect {
                elem: "float",
                to_float: "cascade_f32_to_float",
                from_float: "cascade_float_to_f32",
                pack2: "",
                mma_ptx_type: "",
            },
        }
    }
}
