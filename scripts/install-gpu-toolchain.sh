#!/usr/bin/env bash
# Installs the compilers that check generated kernels on a machine with no GPU (see
# shared/reference/gpu-toolchain.md): nvcc from pinned PyPI wheels into a cache directory, and
# hipcc + clang-15 (gfx90a) and clang-19/lld-19 (gfx942) from Debian packages. Idempotent: a second
# run with everything in place only rewrites the env file. Writes $CACHE/env.sh, which exports
# CASCADE_NVCC, CASCADE_CUOBJDUMP (+ NVDISASM_PATH), CASCADE_CUDA_HOME, CASCADE_HIPCC, CASCADE_HIP_CLANG,
# CASCADE_HIP_DEVICE_LIBS, CASCADE_CLANG19 and CASCADE_GFX942_DEVICE_LIBS for the tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${CASCADE_GPU_TOOLCHAIN_DIR:-$root/.cache/gpu-toolchain}"
mkdir -p "$cache"
log() { echo "install-gpu-toolchain: $*" >&2; }

# --- CUDA: the five 13.0 wheels must be pinned together or pip mixes versions.
cuda_pins=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96
  nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85)
cuda_home="$cache/cuda/nvidia/cu13"
if [[ ! -x "$cuda_home/bin/nvcc" ]]; then
  log "installing nvcc 13.0 wheels into $cache/cuda"
  rm -rf "$cache/cuda.tmp"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$cache/cuda.tmp" "${cuda_pins[@]}"
  rm -rf "$cache/cuda" && mv "$cache/cuda.tmp" "$cache/cuda"
fi
# nvcc 13.0's host-link profile looks in lib64.
[[ -e "$cuda_home/lib64" ]] || ln -s lib "$cuda_home/lib64"
# No 13.0 cuobjdump wheel exists; any 13.x reads sm_80/sm_90a cubins. `cuobjdump -sass` runs
# nvdisasm, found through NVDISASM_PATH (the directory). Kept in their own target so pip never
# touches the pinned compiler tree.
cuobjdump="$(find "$cache/cuobjdump" -name cuobjdump -type f 2>/dev/null | head -n1 || true)"
if [[ -z "$cuobjdump" || ! -f "$(dirname "$cuobjdump")/nvdisasm" ]]; then
  log "installing cuobjdump and nvdisasm into $cache/cuobjdump"
  rm -rf "$cache/cuobjdump.tmp"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$cache/cuobjdump.tmp" nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51
  rm -rf "$cache/cuobjdump" && mv "$cache/cuobjdump.tmp" "$cache/cuobjdump"
  cuobjdump="$(find "$cache/cuobjdump" -name cuobjdump -type f | head -n1)"
fi
chmod +x "$cuobjdump" "$(dirname "$cuobjdump")/nvdisasm"

# --- HIP: Debian's ROCm 5.2.3 (clang-15) for gfx90a, clang-19 + lld-19 for gfx942.
bitcode=/usr/lib/x86_64-linux-gnu/amdgcn/bitcode
if ! command -v hipcc >/dev/null || ! command -v clang++-19 >/dev/null || [[ ! -d "$bitcode" ]] \
  || ! command -v ld.lld-19 >/dev/null || ! command -v llvm-dis-19 >/dev/null; then
  if [[ "$(id -u)" != 0 ]]; then
    log "hipcc/clang-19 missing and not root: skipping the HIP toolchain (apt-get needs root)"
  else
    log "installing hipcc, libamdhip64-dev, clang-19, lld-19, llvm-19 with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends hipcc libamdhip64-dev clang-19 lld-19 \
      llvm-19 >/dev/null
  fi
fi
# ROCm 5.2.3's device libraries stop at gfx940; gfx942 differs only in its ISA-version constant,
# so derive oclc_isa_version_942.bc from the gfx940 one in a private copy of the directory.
gfx942_libs="$cache/amdgcn-gfx942"
if [[ -d "$bitcode" && ! -f "$gfx942_libs/oclc_isa_version_942.bc" ]] \
  && command -v llvm-dis-19 >/dev/null; then
  log "deriving the gfx942 device-lib directory in $gfx942_libs"
  rm -rf "$gfx942_libs.tmp" && mkdir -p "$gfx942_libs.tmp"
  cp "$bitcode"/*.bc "$gfx942_libs.tmp/"
  llvm-dis-19 "$bitcode/oclc_isa_version_940.bc" -o - \
    | sed -e 's/i32 9400/i32 9402/' -e 's/gfx940/gfx942/g' \
    | llvm-as-19 - -o "$gfx942_libs.tmp/oclc_isa_version_942.bc"
  rm -rf "$gfx942_libs" && mv "$gfx942_libs.tmp" "$gfx942_libs"
fi

env_file="$cache/env.sh"
{
  echo "# Written by scripts/install-gpu-toolchain.sh; source it before the tests."
  echo "export CASCADE_CUDA_HOME='$cuda_home'"
  echo "export CASCADE_NVCC='$cuda_home/bin/nvcc'"
  echo "export CASCADE_CUOBJDUMP='$cuobjdump'"
  echo "export NVDISASM_PATH='$(dirname "$cuobjdump")'"
  if command -v hipcc >/dev/null && command -v clang++-15 >/dev/null && [[ -d "$bitcode" ]]; then
    echo "export CASCADE_HIPCC='$(command -v hipcc)'"
    echo "export CASCADE_HIP_CLANG='$(command -v clang++-15)'"
    echo "export CASCADE_HIP_DEVICE_LIBS='$bitcode'"
  fi
  if command -v clang++-19 >/dev/null && [[ -f "$gfx942_libs/oclc_isa_version_942.bc" ]]; then
    echo "export CASCADE_CLANG19='$(command -v clang++-19)'"
    echo "export CASCADE_GFX942_DEVICE_LIBS='$gfx942_libs'"
  fi
} >"$env_file"
log "ready: source $env_file"
echo "$env_file"
