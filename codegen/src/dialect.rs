//! The one table of CUDA-vs-HIP-vs-C++ differences; templates read it and never branch on target.

use crate::{DType, Target};

/// Spellings that differ between targets. Every field is text a template pastes verbatim.
#[derive(Debug, Clone)]
pub struct TargetDialect {
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

    /// The statement that launches `kernel` (CUDA chevrons or `hipLaunchKernelGGL`).
    pub fn launch(
        &self,
        target: Target,
        kernel: &str,
        grid: &str,
        block: &str,
        smem: &str,
        args: &str,
    ) -> String {
        match target {
            Target::Cuda => format!("{kernel}<<<{grid}, {block}, {smem}, stream>>>({args});"),
            Target::Hip => {
                format!("hipLaunchKernelGGL({kernel}, {grid}, {block}, {smem}, stream, {args});")
            }
            Target::Cpp => format!("{kernel}({args});"),
        }
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
