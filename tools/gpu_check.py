#!/usr/bin/env python3
"""One-call GPU check of the generated fused attention kernels against PyTorch.

Where the `cascade` CLI builds (no GPU needed), write the variants' cascades and CUDA sources,
compile them with nvcc into one shared library, and record what was built:

    python3 tools/gpu_check.py --generate-only            # -> .cache/gpu-kernels (carry it)

On a machine with an NVIDIA GPU and PyTorch (no Rust needed; nvcc only if the library built
here does not load there, when it is rebuilt from the carried sources):

    python3 tools/gpu_check.py --kernels .cache/gpu-kernels --out "$OUT"

Each variant (a cascade: plain, causal in both alignments, GQA, BSHD, sliding window, sinks +
window, soft-capping, ALiBi, a sink logit, sigmoid attention, the log-sum-exp outputs, split-K
decode) runs in its own subprocess under a share of the time budget (default 280 s for the
whole run), so a crash, a sticky CUDA error or a timeout loses that variant only. Each
subprocess appends one JSON row per case to OUT/gpu_check.jsonl as soon as the case is done,
and the parent rewrites OUT/gpu_check.md (a table with the device name) after each variant.

A case checks correctness: fresh random inputs in bf16 or fp16, outputs poisoned with NaN,
the kernel's result against a reference computed in float32 from the same rounded inputs
(PyTorch SDPA where it expresses the variant, else a direct PyTorch implementation), as
max |out - ref| / max |ref| within 1e-2 (bf16) or 5e-3 (fp16), every value finite. Timing
cases (bf16, head dim 128 and for some variants 64, 4K-16K tokens) also compare the output
with SDPA's flash backend or FlexAttention, then time the kernel, SDPA's flash backend for
the same mask where it takes it, and FlexAttention with the same mask or score modification,
with CUDA events (median of several event pairs, several launches per pair), as TFLOP/s
(4·B·H·D·visible query-key pairs) and as ratios. Exit status: 0 when every case is correct.
"""

import argparse
import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "libcascade_gpu_check.so"
TOLERANCE = {"bf16": 1e-2, "fp16": 5e-3}
TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
# Correctness at ragged sizes for every dtype and head dim built; timing at these lengths.
CHECK_LENGTHS = (300, 1000)
TIMING_LENGTHS = (4096, 8192, 16384)

# The cascades. `{name}` becomes the kernel's name; Q, K, V and the output are laid out as
# PyTorch's contiguous (B, H, N, D) tensors (BHSD), `batch` being B, unless a variant says
# otherwise.
MHA = """cascade {name}
ranks E F M P H
input Q[E,P,H] K[E,M,H] V[F,M,H]
QK[m,p,h] = Q[e,p,h] * K[e,{key},h] * 1/sqrt(E)
GM[p,h]   = max(m) QK[m,p,h]
SN[m,p,h] = exp(QK[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,p,h] = A[m,p,h] * V[f,m,h]
output AV
"""

WINDOW = """cascade {name}
ranks E F M P H
param W
input Q[E,P,H] K[E,M,H] V[F,M,H]
QK[m,p,h] = Q[e,p,h] * K[e, m : m <= p && p - m < W, h] * 1/sqrt(E)
GM[p,h]   = max(m) QK[m,p,h]
SN[m,p,h] = exp(QK[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,p,h] = A[m,p,h] * V[f,m,h]
output AV
"""

# Attention sinks (the first S keys) united with a causal window of W keys.
SINKS_WINDOW = """cascade {name}
ranks E F M P H
param S W
input Q[E,P,H] K[E,M,H] V[F,M,H]
QS[m,p,h] = Q[e,p,h] * K[e, m : m < S && m <= p, h] * 1/sqrt(E)
QW[m,p,h] = Q[e,p,h] * K[e, m : m >= S && m <= p && p - m < W, h] * 1/sqrt(E)
QK[m,p,h] = QS[m,p,h] + QW[m,p,h]
GM[p,h]   = max(m) QK[m,p,h]
SN[m,p,h] = exp(QK[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,p,h] = A[m,p,h] * V[f,m,h]
output AV
"""

GQA = """cascade {name}
ranks E F M P H
split H -> G R
input Q[E,P,H] K[E,M,G] V[F,M,G]
QK[m,p,g,r] = Q[e,p,g*R+r] * K[e, m : m <= p, g] * 1/sqrt(E)
GM[p,g,r]   = max(m) QK[m,p,g,r]
SN[m,p,g,r] = exp(QK[m,p,g,r] - GM[p,g,r])
SD[p,g,r]   = SN[m,p,g,r]
A[m,p,g,r]  = SN[m,p,g,r] / SD[p,g,r]
AV[f,p,g,r] = A[m,p,g,r] * V[f,m,g]
OUT[f,p,g*R+r] = AV[f,p,g,r]
output OUT
"""

# (B, N, H, D) tensors: the head varies faster than the position.
BSHD = """cascade {name}
ranks E F M P H
input Q[E,H,P] K[E,H,M] V[F,H,M]
QK[m,p,h] = Q[e,h,p] * K[e,h,m] * 1/sqrt(E)
GM[p,h]   = max(m) QK[m,p,h]
SN[m,p,h] = exp(QK[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,h,p] = A[m,p,h] * V[f,h,m]
output AV
"""

# Gemma-2 soft-capping of the scaled scores (cap 30), causal.
SOFTCAP = """cascade {name}
ranks E F M P H
input Q[E,P,H] K[E,M,H] V[F,M,H]
QK[m,p,h] = Q[e,p,h] * K[e, m : m <= p, h] * 1/sqrt(E)
S[m,p,h]  = tanh(QK[m,p,h] /{{&}} 30.0) * 30.0
GM[p,h]   = max(m) S[m,p,h]
SN[m,p,h] = exp(S[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,p,h] = A[m,p,h] * V[f,m,h]
output AV
"""

# ALiBi: a per-head slope times the distance p - m, which the IR takes as data (DIST[M,P]).
ALIBI = """cascade {name}
ranks E F M P H
input Q[E,P,H] K[E,M,H] V[F,M,H] SL[H] DIST[M,P]
QK[m,p,h] = Q[e,p,h] * K[e, m : m <= p, h] * 1/sqrt(E)
S[m,p,h]  = QK[m,p,h] -{{&}} SL[h] * DIST[m,p]
GM[p,h]   = max(m) S[m,p,h]
SN[m,p,h] = exp(S[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,p,h] = A[m,p,h] * V[f,m,h]
output AV
"""

# The 1-pass form with a learned sink logit per head (gpt-oss), causal: the denominator gains
# exp(SINK - max) after the loop.
SINK = """cascade {name}
ranks E F M P H
split M -> M1 M0
input Q[E,P,H] K[E,M,H] V[F,M,H] SINK[H]

init
BK[e,m1,m0,h] = K[e, m1*M0+m0, h]
BV[f,m1,m0,h] = V[f, m1*M0+m0, h]
RM[0,p,h]     = -inf
RD[0,p,h]     = 0
RNV[f,0,p,h]  = 0

einsums
BQK[m1,m0,p,h]  = Q[e,p,h] * BK[e,m1,m0 : m1*M0+m0 <= p,h] * 1/sqrt(E)
LM[m1,p,h]      = max(m0) BQK[m1,m0,p,h]
RM[m1+1,p,h]    = max(RM[m1,p,h], LM[m1,p,h])
SLN[m1,m0,p,h]  = exp(BQK[m1,m0,p,h] - RM[m1+1,p,h])
SLD[m1,p,h]     = SLN[m1,m0,p,h]
SLNV[f,m1,p,h]  = SLN[m1,m0,p,h] * BV[f,m1,m0,h]
PRM[m1,p,h]     = exp(RM[m1,p,h] - RM[m1+1,p,h])
SPD[m1,p,h]     = RD[m1,p,h] * PRM[m1,p,h]
RD[m1+1,p,h]    = SLD[m1,p,h] + SPD[m1,p,h]
SPNV[f,m1,p,h]  = RNV[f,m1,p,h] * PRM[m1,p,h]
RNV[f,m1+1,p,h] = SLNV[f,m1,p,h] + SPNV[f,m1,p,h]
FM[p,h]         = max(RM[M1,p,h], SINK[h])
SK[p,h]         = exp(SINK[h] - FM[p,h])
CR[p,h]         = exp(RM[M1,p,h] - FM[p,h])
DEN[p,h]        = RD[M1,p,h] * CR[p,h] + SK[p,h]
AV[f,p,h]       = RNV[f,M1,p,h] * CR[p,h] / DEN[p,h]

stop m1 >= M1
output AV
"""

# The 1-pass form that also outputs each row's max and sum: lse = MX + log(SM).
LSE = """cascade {name}
ranks E F M P H
split M -> M1 M0
input Q[E,P,H] K[E,M,H] V[F,M,H]

init
BK[e,m1,m0,h] = K[e, m1*M0+m0, h]
BV[f,m1,m0,h] = V[f, m1*M0+m0, h]
RM[0,p,h]     = -inf
RD[0,p,h]     = 0
RNV[f,0,p,h]  = 0

einsums
BQK[m1,m0,p,h]  = Q[e,p,h] * BK[e,m1,m0 : m1*M0+m0 <= p,h] * 1/sqrt(E)
LM[m1,p,h]      = max(m0) BQK[m1,m0,p,h]
RM[m1+1,p,h]    = max(RM[m1,p,h], LM[m1,p,h])
SLN[m1,m0,p,h]  = exp(BQK[m1,m0,p,h] - RM[m1+1,p,h])
SLD[m1,p,h]     = SLN[m1,m0,p,h]
SLNV[f,m1,p,h]  = SLN[m1,m0,p,h] * BV[f,m1,m0,h]
PRM[m1,p,h]     = exp(RM[m1,p,h] - RM[m1+1,p,h])
SPD[m1,p,h]     = RD[m1,p,h] * PRM[m1,p,h]
RD[m1+1,p,h]    = SLD[m1,p,h] + SPD[m1,p,h]
SPNV[f,m1,p,h]  = RNV[f,m1,p,h] * PRM[m1,p,h]
RNV[f,m1+1,p,h] = SLNV[f,m1,p,h] + SPNV[f,m1,p,h]
AV[f,p,h]       = RNV[f,M1,p,h] / RD[M1,p,h]
MX[p,h]         = RM[M1,p,h]
SM[p,h]         = RD[M1,p,h]

stop m1 >= M1
output AV MX SM
"""

# Sigmoid attention with a scalar bias input (b = -log(N) in Ramapuram et al.), causal.
SIGMOID = """cascade {name}
ranks E F M P H
input Q[E,P,H] K[E,M,H] V[F,M,H] BIAS
QK[m,p,h] = Q[e,p,h] * K[e, m : m <= p, h] * 1/sqrt(E)
S[m,p,h]  = sigmoid(QK[m,p,h] +{{&}} BIAS)
AV[f,p,h] = S[m,p,h] * V[f,m,h]
output AV
"""

# Split-K decode (FlashDecoding): the 2-pass local-max form over splits of M0 keys.
SPLIT_K = """cascade {name}
ranks E F M P H
split M -> S M0
input Q[E,P,H] K[E,M,H] V[F,M,H]

init
BK[e,s,m0,h] = K[e, s*M0+m0, h]
BV[f,s,m0,h] = V[f, s*M0+m0, h]

einsums
BQK[s,m0,p,h] = Q[e,p,h] * BK[e,s,m0,h] * 1/sqrt(E)
LM[s,p,h]     = max(m0) BQK[s,m0,p,h]
SLN[s,m0,p,h] = exp(BQK[s,m0,p,h] - LM[s,p,h])
SLD[s,p,h]    = SLN[s,m0,p,h]
SLNV[f,s,p,h] = SLN[s,m0,p,h] * BV[f,s,m0,h]
GM[p,h]       = max(s) LM[s,p,h]
CS[s,p,h]     = exp(LM[s,p,h] - GM[p,h])
SD[p,h]       = SLD[s,p,h] * CS[s,p,h]
SNV[f,p,h]    = SLNV[f,s,p,h] * CS[s,p,h]
AV[f,p,h]     = SNV[f,p,h] / SD[p,h]
output AV
"""

# Each variant: its cascade, which mask its keys see (for the references and the pair count),
# the head dims it is built for (timed at the first), and how its problem sizes are chosen.
VARIANTS = {
    "mha": dict(cascade=MHA.replace("{key}", "m"), mask="none", hds=(128, 64)),
    "causal": dict(cascade=MHA.replace("{key}", " m : m <= p"), mask="causal", hds=(128, 64)),
    "gqa_causal": dict(cascade=GQA, mask="causal", hds=(128,), gqa=4),
    "decode_split_k": dict(cascade=SPLIT_K, mask="none", hds=(128,), decode=True),
    "causal_bottom_right": dict(
        cascade=MHA.replace("{key}", " m : m <= p + M - P"), mask="causal_br", hds=(128,), kv_extra=True
    ),
    "bshd": dict(cascade=BSHD, mask="none", hds=(128,), layout="bshd"),
    "window": dict(cascade=WINDOW, mask="window", hds=(128,)),
    "sinks_window": dict(cascade=SINKS_WINDOW, mask="sinks_window", hds=(128,)),
    "softcap": dict(cascade=SOFTCAP, mask="causal", hds=(128,), score="softcap"),
    "alibi": dict(cascade=ALIBI, mask="causal", hds=(128,), score="alibi", max_timing=8192),
    "sink": dict(cascade=SINK, mask="causal", hds=(128,), score="sink"),
    "lse": dict(cascade=LSE, mask="causal", hds=(128,), score="lse"),
    "sigmoid": dict(cascade=SIGMOID, mask="causal", hds=(128,), score="sigmoid"),
}
WINDOW_W, SINKS_S = 256, 4
DTYPES = ("bf16", "fp16")


def kernel_name(variant: str, dtype: str, hd: int) -> str:
    return f"gc_{variant}_{dtype}_hd{hd}"


def builds():
    """Every (variant, dtype, head dim) built: both dtypes at each head dim."""
    for v, spec in VARIANTS.items():
        for hd in spec["hds"]:
            for dtype in DTYPES:
                yield v, dtype, hd


# ---------------------------------------------------------------------------------------------
# Generation and compilation (here, no GPU).


def cascade_command(explicit):
    if explicit:
        return [explicit]
    # Through cargo when it is there, so the kernels never come from a stale build in target/.
    if shutil.which("cargo"):
        return ["cargo", "run", "--quiet", "--release", "--manifest-path", str(ROOT / "Cargo.toml"), "--"]
    for profile in ("release", "debug"):
        exe = ROOT / "target" / profile / "cascade"
        if exe.exists():
            return [str(exe)]
    return None


def nvcc_command(explicit):
    for candidate in (explicit, os.environ.get("CASCADE_NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def generate(kernels: Path, cascade_bin, nvcc, jobs: int, compile_objects: bool = True) -> dict:
    """Writes every cascade and its CUDA source, compiles each into an object (a failure loses
    that kernel only), links the objects into one shared library, and writes the manifest."""
    binary = cascade_command(cascade_bin)
    if binary is None:
        raise SystemExit("no `cascade` binary or cargo to generate the kernels with")
    (kernels / "src").mkdir(parents=True, exist_ok=True)
    entries = {}
    for v, dtype, hd in builds():
        name = kernel_name(v, dtype, hd)
        cascade = kernels / "src" / f"{name}.cascade"
        cascade.write_text(VARIANTS[v]["cascade"].replace("{name}", name).replace("{{&}}", "{&}"))
        out = kernels / "src" / name
        cmd = binary + ["codegen", str(cascade), "--target", "cuda", "--dtype", dtype, "--head-dim", str(hd),
                        "--out", str(out), "--format", "json"]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        entry = {"variant": v, "dtype": dtype, "head_dim": hd, "source": f"src/{name}/cascade_{name}.cu",
                 "header": f"src/{name}/cascade_{name}.h"}
        if res.returncode != 0:
            entry["error"] = f"codegen failed: {res.stderr.strip()}"
        else:
            info = json.loads(res.stdout)
            entry["fused"] = info["fused"]
            entry["plan"] = info["plan"]
        entries[name] = entry
    manifest = {"entries": entries, "library": None, "built_with": None}
    if compile_objects and nvcc:
        manifest.update(build_library(kernels, entries, nvcc, jobs))
    (kernels / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def object_command(nvcc: str, src: Path, obj: Path):
    return [nvcc, "-O3", "-std=c++17", "-c", "-Xcompiler", "-fPIC",
            "-gencode", "arch=compute_90a,code=sm_90a", "-gencode", "arch=compute_80,code=sm_80",
            "-Xptxas", "-v", "-o", str(obj), str(src)]


def build_library(kernels: Path, entries: dict, nvcc: str, jobs: int) -> dict:
    """Objects in parallel, then one shared library of those that compiled."""
    (kernels / "obj").mkdir(exist_ok=True)

    def one(item):
        name, entry = item
        if "error" in entry:
            return name, None
        obj = kernels / "obj" / f"{name}.o"
        res = subprocess.run(object_command(nvcc, kernels / entry["source"], obj), capture_output=True, text=True)
        if res.returncode != 0:
            return name, f"nvcc failed: {res.stderr.strip()[-2000:]}"
        regs = sorted(set(re.findall(r"Used (\d+) registers", res.stderr)))
        spills = [l for l in res.stderr.splitlines() if "spill" in l and " 0 bytes spill stores, 0 bytes spill loads" not in l]
        entry["registers"] = regs
        entry["spills"] = spills
        return name, None

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, error in pool.map(one, sorted(entries.items())):
            if error:
                entries[name]["error"] = error
    objects = [str(kernels / "obj" / f"{n}.o") for n, e in sorted(entries.items()) if "error" not in e]
    lib = kernels / LIBRARY
    res = subprocess.run([nvcc, "-shared", "-o", str(lib)] + objects, capture_output=True, text=True)
    if res.returncode != 0:
        return {"library": None, "built_with": nvcc, "link_error": res.stderr.strip()[-2000:]}
    return {"library": LIBRARY, "built_with": nvcc, "library_sha256": hashlib.sha256(lib.read_bytes()).hexdigest()}


def load_library(kernels: Path, manifest: dict, nvcc, jobs: int):
    """The shared library built here, or rebuilt there from the carried sources when it does
    not load (another system's libraries); `(ctypes.CDLL or None, note)`."""
    if manifest.get("library"):
        try:
            return ctypes.CDLL(str(kernels / manifest["library"])), "built where the cascade CLI runs"
        except OSError as e:
            note = f"the carried library does not load ({e}); rebuilt here"
    else:
        note = "no library was carried; built here"
    if not nvcc:
        return None, note + ": no nvcc"
    manifest.update(build_library(kernels, manifest["entries"], nvcc, jobs))
    if not manifest.get("library"):
        return None, note + f": {manifest.get('link_error')}"
    return ctypes.CDLL(str(kernels / manifest["library"])), note


# ---------------------------------------------------------------------------------------------
# The launcher ABI, read from the generated header.

PROTOTYPE = re.compile(r"^int (cascade_\w+)\((.*)\);$", re.M)


def parse_prototype(header: str):
    """`(symbol, [(type, name)…])` of the launcher the header declares."""
    m = PROTOTYPE.search(header)
    if not m:
        raise ValueError("no launcher prototype in the header")
    params = []
    for p in m.group(2).split(", "):
        kind, name = p.rsplit(" ", 1)
        params.append((kind, name))
    return m.group(1), params


def ctypes_of(kind: str):
    if "*" in kind:
        return ctypes.c_void_p
    return {"int": ctypes.c_int, "long long": ctypes.c_longlong,
            "unsigned long long": ctypes.c_ulonglong}[kind]


# ---------------------------------------------------------------------------------------------
# Problems, pairs and tolerances (pure Python: testable without torch).


def visible_pairs(mask: str, nq: int, nk: int) -> int:
    """Query-key pairs a mask keeps, the FLOP count's factor (4·B·H·D per pair)."""
    if mask == "none":
        return nq * nk
    if mask in ("causal", "causal_br"):
        off = nk - nq if mask == "causal_br" else 0
        return sum(max(0, min(nk, p + off + 1)) for p in range(nq))
    if mask == "window":
        return sum(max(0, min(nk, p + 1) - max(0, p - WINDOW_W + 1)) for p in range(nq))
    if mask == "sinks_window":
        total = 0
        for p in range(nq):
            lo = max(SINKS_S, p - WINDOW_W + 1)
            hi = min(nk - 1, p)
            total += min(SINKS_S, p + 1, nk) + max(0, hi - lo + 1)
        return total
    raise ValueError(f"unknown mask {mask}")


def keep(mask: str, p: int, m: int, nq: int, nk: int) -> bool:
    """Whether key m is visible to query p (the cascades' filters, for tests)."""
    if mask == "none":
        return True
    if mask == "causal":
        return m <= p
    if mask == "causal_br":
        return m <= p + nk - nq
    if mask == "window":
        return m <= p and p - m < WINDOW_W
    if mask == "sinks_window":
        return (m < SINKS_S and m <= p) or (m >= SINKS_S and m <= p and p - m < WINDOW_W)
    raise ValueError(mask)


def problem(variant: str, hd: int, n: int, timing: bool) -> dict:
    """Batch, heads, query and key counts of one case (FlashAttention's benchmark shapes when
    timing: B·N = 16K tokens, 2048/D heads)."""
    spec = VARIANTS[variant]
    if spec.get("decode"):
        return {"B": 8 if timing else 2, "H": 32 if timing else 4, "NQ": 1 if timing else 3,
                "NK": 4 * n if timing else n}
    heads = 2048 // hd if timing else 3
    batch = max(1, 16384 // n) if timing else 2
    if spec.get("gqa"):
        heads = max(heads, spec["gqa"] * 2)
    nq, nk = n, n
    if spec.get("kv_extra"):
        nq = n // 2
    return {"B": batch, "H": heads, "NQ": nq, "NK": nk}


def sizes_for(variant: str, hd: int, pb: dict) -> dict:
    """The launcher's size arguments by name."""
    spec = VARIANTS[variant]
    s = {"E": hd, "F": hd, "M": pb["NK"], "P": pb["NQ"], "H": pb["H"], "M0": 0, "W": WINDOW_W, "S": SINKS_S}
    if spec.get("gqa"):
        s["R"] = spec["gqa"]
    if spec.get("decode"):
        # 128-key splits (the split kernel's own split count is the launcher's choice).
        s["M0"] = 128 if pb["NK"] % 128 == 0 else 0
    return s


def rel_error(out, ref) -> float:
    scale = float(ref.abs().max())
    return float((out.float() - ref.float()).abs().max()) / (scale if scale > 0 else 1.0)


# ---------------------------------------------------------------------------------------------
# One variant on the GPU (a child process).


def time_ms(torch, call, launches: int, pairs: int, warmup: int = 2) -> float:
    """Median over `pairs` CUDA-event pairs of the time per launch, `launches` per pair."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(pairs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(launches):
            call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / launches)
    return statistics.median(times)


class Case:
    """Inputs, the kernel call and the references of one variant at one size."""

    def __init__(self, torch, lib, kernels: Path, manifest: dict, variant: str, dtype: str, hd: int, pb: dict):
        self.torch, self.variant, self.dtype, self.hd, self.pb = torch, variant, dtype, hd, pb
        self.spec = VARIANTS[variant]
        name = kernel_name(variant, dtype, hd)
        entry = manifest["entries"][name]
        if "error" in entry:
            raise RuntimeError(entry["error"])
        symbol, params = parse_prototype((kernels / entry["header"]).read_text())
        self.fn = getattr(lib, symbol)
        self.fn.argtypes = [ctypes_of(k) for k, _ in params]
        self.fn.restype = ctypes.c_int
        self.params = params
        self.plan = entry.get("plan", "")
        tdt = getattr(torch, TORCH_DTYPE[dtype])
        B, H, NQ, NK = pb["B"], pb["H"], pb["NQ"], pb["NK"]
        G = H // self.spec["gqa"] if self.spec.get("gqa") else H
        dev = "cuda"
        self.q = (torch.randn(B, H, NQ, hd, device=dev)).to(tdt)
        self.k = torch.randn(B, G, NK, hd, device=dev).to(tdt)
        self.v = torch.randn(B, G, NK, hd, device=dev).to(tdt)
        self.extra = {}
        score = self.spec.get("score")
        if score == "alibi":
            slopes = torch.tensor([2.0 ** (-8.0 * (i + 1) / H) for i in range(H)], device=dev)
            self.extra["SL"] = slopes.to(tdt).expand(B, H).contiguous()
            p = torch.arange(NQ, device=dev).view(NQ, 1)
            m = torch.arange(NK, device=dev).view(1, NK)
            self.extra["DIST"] = (p - m).to(tdt).expand(B, NQ, NK).contiguous()  # DIST[M,P]: [P][M]
        if score == "sink":
            self.extra["SINK"] = torch.randn(B, H, device=dev).to(tdt)
        if score == "sigmoid":
            self.extra["BIAS"] = torch.full((B,), -math.log(NK), device=dev).to(tdt)
        self.outputs = {}
        out_shape = (B, NQ, H, hd) if self.spec.get("layout") == "bshd" else (B, H, NQ, hd)
        self.outputs["out"] = torch.full(out_shape, float("nan"), device=dev, dtype=tdt)
        if score == "lse":
            self.outputs["MX"] = torch.full((B, H, NQ), float("nan"), device=dev, dtype=tdt)
            self.outputs["SM"] = torch.full((B, H, NQ), float("nan"), device=dev, dtype=tdt)
        if self.spec.get("layout") == "bshd":
            self.q = self.q.transpose(1, 2).contiguous()
            self.k = self.k.transpose(1, 2).contiguous()
            self.v = self.v.transpose(1, 2).contiguous()
        self.sizes = sizes_for(variant, hd, pb)

    def pointer(self, name: str):
        if name in ("Q", "K", "V"):
            return getattr(self, name.lower()).data_ptr()
        if name in self.extra:
            return self.extra[name].data_ptr()
        if name in ("AV", "OUT"):
            return self.outputs["out"].data_ptr()
        return self.outputs[name].data_ptr()

    def run(self) -> int:
        args = []
        for kind, name in self.params:
            if "*" in kind and name == "workspace":
                args.append(None)
            elif name == "workspace_bytes":
                args.append(0)
            elif name == "stream_ptr":
                args.append(self.torch.cuda.current_stream().cuda_stream)
            elif "*" in kind:
                args.append(self.pointer(name))
            elif name == "batch":
                args.append(self.pb["B"])
            else:
                args.append(self.sizes[name])
        return self.fn(*args)

    def bhsd(self, x):
        return x.transpose(1, 2) if self.spec.get("layout") == "bshd" else x

    def bool_mask(self):
        t = self.torch
        NQ, NK = self.pb["NQ"], self.pb["NK"]
        p = t.arange(NQ, device="cuda").view(NQ, 1)
        m = t.arange(NK, device="cuda").view(1, NK)
        mask = self.spec["mask"]
        if mask == "none":
            return None
        if mask == "causal":
            return m <= p
        if mask == "causal_br":
            return m <= p + NK - NQ
        if mask == "window":
            return (m <= p) & (p - m < WINDOW_W)
        return ((m < SINKS_S) & (m <= p)) | ((m >= SINKS_S) & (m <= p) & (p - m < WINDOW_W))

    def reference(self):
        """float32 from the same rounded inputs: SDPA where it expresses the variant, else direct."""
        t, F = self.torch, self.torch.nn.functional
        q, k, v = (self.bhsd(x).float() for x in (self.q, self.k, self.v))
        gqa = bool(self.spec.get("gqa"))
        if gqa:
            k = k.repeat_interleave(self.spec["gqa"], dim=1)
            v = v.repeat_interleave(self.spec["gqa"], dim=1)
        mask = self.bool_mask()
        score = self.spec.get("score")
        if score is None:
            return {"out": F.scaled_dot_product_attention(q, k, v, attn_mask=mask)}
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        if score == "softcap":
            s = 30.0 * t.tanh(s / 30.0)
        if score == "alibi":
            s = s - self.extra["SL"].float()[:, :, None, None] * self.extra["DIST"].float()[:, None]
        if score == "sigmoid":
            w = t.sigmoid(s + self.extra["BIAS"].float()[:, None, None, None])
            w = w.masked_fill(~mask, 0.0) if mask is not None else w
            return {"out": w @ v}
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        if score == "sink":
            sink = self.extra["SINK"].float()[:, :, None, None].expand(*s.shape[:3], 1)
            p = t.softmax(t.cat([s, sink], dim=-1), dim=-1)[..., :-1]
            return {"out": p @ v}
        out = t.softmax(s, dim=-1) @ v
        if score == "lse":
            mx = s.amax(dim=-1)
            return {"out": out, "MX": mx, "SM": t.exp(s - mx[..., None]).sum(dim=-1)}
        return {"out": out}

    def flex_mods(self):
        """FlexAttention's score_mod and mask_mod for the variant, or None where it has none."""
        t = self.torch
        mask, score = self.spec["mask"], self.spec.get("score")
        if score in ("sigmoid", "sink", "lse"):
            return None
        nq, nk = self.pb["NQ"], self.pb["NK"]
        masks = {
            "none": None,
            "causal": lambda b, h, qi, ki: ki <= qi,
            "causal_br": lambda b, h, qi, ki: ki <= qi + (nk - nq),
            "window": lambda b, h, qi, ki: (ki <= qi) & (qi - ki < WINDOW_W),
            "sinks_window": lambda b, h, qi, ki: ((ki < SINKS_S) & (ki <= qi)) | ((ki >= SINKS_S) & (ki <= qi) & (qi - ki < WINDOW_W)),
        }
        score_mod = None
        if score == "softcap":
            def score_mod(s, b, h, qi, ki):
                return 30.0 * t.tanh(s / 30.0)
        if score == "alibi":
            slopes = self.extra["SL"][0].float()

            def score_mod(s, b, h, qi, ki):
                return s - slopes[h] * (qi - ki)
        return score_mod, masks[mask]

    def sdpa_flash(self):
        """SDPA's flash backend on the same (bf16) inputs, where it takes the variant."""
        F = self.torch.nn.functional
        if self.spec.get("score") or self.spec["mask"] in ("window", "sinks_window"):
            return None
        q, k, v = (self.bhsd(x) for x in (self.q, self.k, self.v))
        kwargs = {"enable_gqa": bool(self.spec.get("gqa"))}
        mask = self.spec["mask"]
        if mask == "causal":
            kwargs["is_causal"] = True
        if mask == "causal_br":
            from torch.nn.attention.bias import causal_lower_right
            kwargs["attn_mask"] = causal_lower_right(self.pb["NQ"], self.pb["NK"])
        return lambda: F.scaled_dot_product_attention(q, k, v, **kwargs)


def run_variant(variant: str, kernels: Path, out: Path, nvcc, quick: bool):
    """Every case of one variant; one JSON row per case appended as it finishes."""
    import torch

    manifest = json.loads((kernels / "manifest.json").read_text())
    lib, note = load_library(kernels, manifest, nvcc, os.cpu_count() or 4)
    rows = out / "gpu_check.jsonl"
    device = torch.cuda.get_device_name()

    def emit(row):
        row.update({"variant": variant, "device": device})
        with rows.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    if lib is None:
        emit({"ok": False, "error": note})
        return
    torch.manual_seed(0)
    spec = VARIANTS[variant]
    for hd in spec["hds"]:
        for dtype in DTYPES:
            for n in CHECK_LENGTHS[:1] if quick else CHECK_LENGTHS:
                pb = problem(variant, hd, n, timing=False)
                row = {"kind": "check", "dtype": dtype, "head_dim": hd, **pb}
                try:
                    case = Case(torch, lib, kernels, manifest, variant, dtype, hd, pb)
                    rc = case.run()
                    torch.cuda.synchronize()
                    ref = case.reference()
                    errs = {}
                    finite = True
                    for key, want in ref.items():
                        got = case.outputs[key]
                        finite &= bool(torch.isfinite(got).all())
                        errs[key] = rel_error(case.bhsd(got) if key == "out" else got, want)
                    worst = max(errs.values())
                    row.update({"rc": rc, "finite": finite, "max_rel_err": worst,
                                "ok": rc == 0 and finite and worst <= TOLERANCE[dtype], "plan": case.plan})
                except Exception as e:  # noqa: BLE001 - any failure is this case's row
                    row.update({"ok": False, "error": f"{type(e).__name__}: {e}"})
                emit(row)
    # Timing: bf16 at the first head dim (and 64 where built).
    flex = None
    for hd in spec["hds"]:
        lengths = TIMING_LENGTHS[:1] if quick else TIMING_LENGTHS
        lengths = [n for n in lengths if n <= spec.get("max_timing", n)]
        for n in lengths:
            pb = problem(variant, hd, n, timing=True)
            row = {"kind": "time", "dtype": "bf16", "head_dim": hd, **pb}
            try:
                case = Case(torch, lib, kernels, manifest, variant, "bf16", hd, pb)
                rc = case.run()
                torch.cuda.synchronize()
                finite = bool(torch.isfinite(case.outputs["out"]).all())
                flops = 4 * pb["B"] * pb["H"] * hd * visible_pairs(spec["mask"], pb["NQ"], pb["NK"])
                launches = 5 if flops > 2e12 else 20
                ms = time_ms(torch, case.run, launches, 5)
                row.update({"rc": rc, "finite": finite, "cascade_ms": ms, "cascade_tflops": flops / ms / 1e9})
                ok = rc == 0 and finite
                sdpa = case.sdpa_flash()
                if sdpa is not None:
                    from torch.nn.attention import SDPBackend, sdpa_kernel
                    try:
                        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                            want = sdpa()
                            err = rel_error(case.bhsd(case.outputs["out"]), want)
                            row["vs_flash_err"] = err
                            ok &= err <= TOLERANCE["bf16"]
                            fms = time_ms(torch, sdpa, launches, 5)
                        row["flash_tflops"] = flops / fms / 1e9
                        row["ratio_flash"] = fms / ms
                    except RuntimeError as e:
                        row["flash_error"] = str(e)[:200]
                # FlexAttention compiles a kernel per shape: compare at one length only.
                mods = case.flex_mods() if n == lengths[len(lengths) // 2] else None
                if mods is not None:
                    try:
                        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
                        if flex is None:
                            flex = torch.compile(flex_attention, dynamic=False)
                        score_mod, mask_mod = mods
                        q, k, v = (case.bhsd(x) for x in (case.q, case.k, case.v))
                        block = None if mask_mod is None else create_block_mask(
                            mask_mod, None, None, pb["NQ"], pb["NK"], device="cuda")
                        gqa = bool(spec.get("gqa"))

                        def run_flex():
                            return flex(q, k, v, score_mod=score_mod, block_mask=block, enable_gqa=gqa)
                        want = run_flex()
                        err = rel_error(case.bhsd(case.outputs["out"]), want)
                        row["vs_flex_err"] = err
                        ok &= err <= TOLERANCE["bf16"]
                        xms = time_ms(torch, run_flex, launches, 5)
                        row["flex_tflops"] = flops / xms / 1e9
                        row["ratio_flex"] = xms / ms
                    except Exception as e:  # noqa: BLE001
                        row["flex_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                row["ok"] = ok
                del case
                torch.cuda.empty_cache()
            except Exception as e:  # noqa: BLE001
                row.update({"ok": False, "error": f"{type(e).__name__}: {e}"})
            emit(row)


# ---------------------------------------------------------------------------------------------
# The parent: one subprocess per variant, under the budget.


def read_rows(path: Path):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut off by a killed child
    return rows


def cell(x, fmt="{:.0f}"):
    return "-" if x is None else fmt.format(x)


def table(rows) -> str:
    device = next((r["device"] for r in rows if r.get("device")), "unknown device")
    lines = [f"# Fused cascade kernels vs PyTorch on {device}", "",
             "Correctness: bf16/fp16 inputs, NaN-poisoned outputs, against float32 references. "
             "Timing: CUDA events, median of 5 event pairs of several launches; TFLOP/s = 4·B·H·D·(visible pairs) / time; "
             "ratio = other time / cascade time (> 1: the cascade kernel is faster).", "",
             "| variant | kind | dtype | hd | B | H | Nq | Nk | max rel err | ok | cascade TFLOP/s | SDPA flash | FlexAttention | vs flash | vs flex | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        note = r.get("error") or r.get("flash_error") or r.get("flex_error") or ""
        err = r.get("max_rel_err", r.get("vs_flash_err", r.get("vs_flex_err")))
        lines.append(
            f"| {r.get('variant')} | {r.get('kind', '-')} | {r.get('dtype', '-')} | {r.get('head_dim', '-')} | "
            f"{r.get('B', '-')} | {r.get('H', '-')} | {r.get('NQ', '-')} | {r.get('NK', '-')} | {cell(err, '{:.1e}')} | "
            f"{'yes' if r.get('ok') else '**NO**'} | {cell(r.get('cascade_tflops'))} | {cell(r.get('flash_tflops'))} | "
            f"{cell(r.get('flex_tflops'))} | {cell(r.get('ratio_flash'), '{:.2f}')} | {cell(r.get('ratio_flex'), '{:.2f}')} | "
            f"{note[:80].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def orchestrate(variants, child_command, out: Path, budget_s: float, per_variant_s: float, clock=time.monotonic):
    """Runs each variant's child command with what is left of the budget (at most
    `per_variant_s`); a timeout or crash is recorded as a row and the next variant runs. The
    table is rewritten after every variant, so a cut-off run keeps what finished."""
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "gpu_check.jsonl"
    start = clock()
    for v in variants:
        left = budget_s - (clock() - start)
        if left < 5:
            with rows_path.open("a") as f:
                f.write(json.dumps({"variant": v, "ok": False, "error": "skipped: the time budget is spent"}) + "\n")
            continue
        timeout = min(per_variant_s, left)
        try:
            res = subprocess.run(child_command(v), timeout=timeout)
            if res.returncode != 0:
                with rows_path.open("a") as f:
                    f.write(json.dumps({"variant": v, "ok": False, "error": f"exited with {res.returncode}"}) + "\n")
        except subprocess.TimeoutExpired:
            with rows_path.open("a") as f:
                f.write(json.dumps({"variant": v, "ok": False, "error": f"timed out after {timeout:.0f} s"}) + "\n")
        (out / "gpu_check.md").write_text(table(read_rows(rows_path)))
    rows = read_rows(rows_path)
    (out / "gpu_check.md").write_text(table(rows))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=Path, default=ROOT / ".cache" / "gpu-kernels")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--generate-only", action="store_true", help="write and compile the kernels, then stop")
    ap.add_argument("--no-compile", action="store_true", help="with --generate-only: sources and manifest only")
    ap.add_argument("--cascade-bin", help="the cascade CLI (default: target/{release,debug}/cascade, else cargo run)")
    ap.add_argument("--nvcc", help="nvcc (default: $CASCADE_NVCC, nvcc on PATH, /usr/local/cuda/bin/nvcc)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--budget-s", type=float, default=280.0, help="the whole device run's time budget")
    ap.add_argument("--per-variant-s", type=float, default=75.0, help="the most one variant may take")
    ap.add_argument("--quick", action="store_true", help="one length per check and timing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    variants = list(VARIANTS)
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    nvcc = nvcc_command(args.nvcc)
    if args.generate_only:
        manifest = generate(args.kernels, args.cascade_bin, nvcc, args.jobs, not args.no_compile)
        failed = {n: e["error"] for n, e in manifest["entries"].items() if "error" in e}
        print(f"kernels under {args.kernels}: {len(manifest['entries'])} sources, library: {manifest.get('library')}")
        for n, e in failed.items():
            print(f"  {n}: {e[:300]}", file=sys.stderr)
        return 1 if failed or (not args.no_compile and not manifest.get("library")) else 0
    if not (args.kernels / "manifest.json").exists():
        ap.error(f"no {args.kernels / 'manifest.json'}: run with --generate-only where the cascade CLI builds")
    if args.child:
        run_variant(args.child, args.kernels, args.out, nvcc, args.quick)
        return 0
    base = [sys.executable, str(Path(__file__).resolve()), "--kernels", str(args.kernels), "--out", str(args.out)]
    if args.nvcc:
        base += ["--nvcc", args.nvcc]
    if args.quick:
        base.append("--quick")
    rows = orchestrate(variants, lambda v: base + ["--child", v], args.out, args.budget_s, args.per_variant_s)
    ok = bool(rows) and all(r.get("ok") for r in rows)
    print(table(rows))
    print("all correct" if ok else "SOME CASES FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
