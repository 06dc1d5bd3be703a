#!/usr/bin/env python3
"""Validate and time the generated fused attention kernels on an NVIDIA GPU against PyTorch SDPA.

One call on a GPU machine (nvcc, PyTorch; no Rust needed there):

    # here, where the `cascade` CLI builds: write the kernels into an ignored folder
    python3 tools/gpu_check.py --generate-only --tune --kernels .cache/gpu-kernels
    # on the GPU machine, carrying .cache/gpu-kernels
    python3 tools/gpu_check.py --kernels .cache/gpu-kernels --tune --out "$OUT"

For each dtype (bf16, fp16), head dim (64, 128) and mask (none: attention_1pass; causal:
attention_causal_1pass, whose mask is the cascade's own filter; and, for bf16 at head dim 128
up to 4K tokens, bias: attention_masked_1pass with an additive float mask holding -inf) it compiles the generated CUDA
with nvcc into a shared library, loads it with ctypes and, over a grid of lengths 512..16K
(batch = 16K / length, heads = 2048 / head dim, as FlashAttention's benchmarks do, plus one
ragged length), it:
  * poisons the output with NaN, runs the kernel on fresh random inputs, and compares with
    torch SDPA computed in f32 on the same (rounded) inputs: max |out - ref| / max |ref| must be
    at most the tolerance (1e-2 for bf16, 5e-3 for fp16), and no NaN/inf passes;
  * times the kernel and SDPA (each backend that accepts the problem: flash, cuDNN, efficient,
    named explicitly) with CUDA events: median of --iters runs after --warmup runs;
  * prints a TFLOP/s table (4·B·H·N²·D flops, halved for causal) and writes it, with the
    device name, to OUT/gpu_check.md and OUT/gpu_check.json.

The library cascades compute softmax(Qᵀ K) V with no 1/sqrt(d) scale, so SDPA is called with
scale=1.0, and Q is drawn with standard deviation d^-1/2 so that the scores look like real ones.
Exit status: 0 when every case is correct, 1 otherwise.
"""

import argparse
import concurrent.futures
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
TOLERANCE = {"bf16": 1e-2, "fp16": 5e-3}
# The mask kind of each checked cascade: none, the cascade's causal filter, an additive bias input.
CASCADES = {"none": "attention_1pass", "causal": "attention_causal_1pass", "bias": "attention_masked_1pass"}


# Schedule variants beyond the CLI's suggestion: tag -> extra `cascade codegen` flags.
TUNINGS = {"": [], "w8": ["--warps", "8"], "n32": ["--block-n", "32"], "w8n32": ["--warps", "8", "--block-n", "32"],
           "plain": ["--no-ldmatrix"]}


def variant_dir(kernels: Path, dtype: str, head_dim: int, mask: str, tag: str = "") -> Path:
    return kernels / f"{CASCADES[mask]}_{dtype}_hd{head_dim}{'_' + tag if tag else ''}"


def cascade_binary(explicit):
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


def generate(kernels: Path, variants, binary):
    """Writes each variant's CUDA source with `cascade codegen` unless it is already there."""
    for dtype, head_dim, mask, tag in variants:
        out = variant_dir(kernels, dtype, head_dim, mask, tag)
        if (out / f"cascade_{CASCADES[mask]}.cu").exists():
            continue
        if binary is None:
            sys.exit(f"no kernel in {out} and no `cascade` binary or cargo to generate it; "
                     f"run `python3 tools/gpu_check.py --generate-only` where the CLI builds")
        cmd = binary + ["codegen", CASCADES[mask], "--target", "cuda", "--dtype", dtype,
                        "--head-dim", str(head_dim), "--out", str(out)] + TUNINGS[tag]
        subprocess.run(cmd, check=True, cwd=ROOT)


def arch_flag(torch):
    major, minor = torch.cuda.get_device_capability()
    suffix = "a" if (major, minor) == (9, 0) else ""
    return f"-arch=sm_{major}{minor}{suffix}"


def build(kernels: Path, variant, arch: str, nvcc: str) -> Path:
    dtype, head_dim, mask, tag = variant
    src = variant_dir(kernels, dtype, head_dim, mask, tag) / f"cascade_{CASCADES[mask]}.cu"
    lib = Path("/tmp/cascade_gpu_check") / f"lib{src.parent.name}.so"
    lib.parent.mkdir(parents=True, exist_ok=True)
    cmd = [nvcc, "-O3", "-std=c++17", arch, "-Xcompiler", "-fPIC", "-shared", "-Xptxas", "-v",
           "-o", str(lib), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"nvcc failed for {src}:\n{res.stderr}")
    spills = [l for l in res.stderr.splitlines() if "spill" in l and " 0 bytes spill stores, 0 bytes spill loads" not in l]
    if spills:
        print(f"warning: {src.name} ({dtype}, hd{head_dim}) spills: {spills}", file=sys.stderr)
    return lib


def load(lib: Path, mask: str):
    """The launcher: inputs (Q, K, V[, MASK]), output AV, batch, sizes E F M P M0, stream."""
    fn = getattr(ctypes.CDLL(str(lib)), f"cascade_{CASCADES[mask]}")
    pointers = 5 if mask == "bias" else 4
    fn.argtypes = [ctypes.c_void_p] * pointers + [ctypes.c_int] + [ctypes.c_longlong] * 5 + [ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def time_ms(torch, call, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def grid(head_dim: int, quick: bool, mask: str):
    heads = 2048 // head_dim
    lengths = [512, 2048, 8192] if quick else [512, 1024, 2048, 4096, 8192, 16384]
    if mask == "bias":  # the bias is B·H·N² elements: stay within memory
        lengths = [n for n in lengths if n <= 4096]
    cases = [(max(1, 16384 // n), heads, n) for n in lengths]
    cases.append((2, 3, 1000))  # ragged: not a multiple of any tile
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=Path, default=ROOT / ".cache" / "gpu-kernels")
    ap.add_argument("--cascade-bin", help="the cascade CLI (default: cargo run --release, else target/*/cascade)")
    ap.add_argument("--generate-only", action="store_true", help="write the CUDA sources and stop")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--quick", action="store_true", help="three lengths instead of six")
    ap.add_argument("--tune", action="store_true",
                    help="also bf16 kernels with other warps / key tiles and with plain (non-ldmatrix) loads")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--nvcc", default=os.environ.get("CASCADE_NVCC"))
    args = ap.parse_args()
    if args.nvcc is None:
        args.nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"

    variants = [(d, hd, m, "") for d in DTYPES for hd in (64, 128) for m in ("none", "causal")]
    variants.append(("bf16", 128, "bias", ""))
    if args.tune:
        variants += [("bf16", hd, m, tag) for hd in (64, 128) for m in ("none", "causal") for tag in TUNINGS if tag]
    generate(args.kernels, variants, cascade_binary(args.cascade_bin))
    if args.generate_only:
        print(f"kernels written under {args.kernels}")
        return 0

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = torch.cuda.get_device_name()
    arch = arch_flag(torch)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        libs = dict(zip(variants, pool.map(lambda v: build(args.kernels, v, arch, args.nvcc), variants)))
    print(f"device: {device}, torch {torch.__version__}, nvcc arch {arch}")

    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
    rows, all_ok = [], True
    torch.manual_seed(0)
    for variant in variants:
        dtype, head_dim, mask, tag = variant
        causal = mask == "causal"
        fn = load(libs[variant], mask)
        tdtype = getattr(torch, DTYPES[dtype])
        for batch, heads, n in grid(head_dim, args.quick, mask):
            shape = (batch, heads, n, head_dim)
            q = (torch.randn(shape, device="cuda") * head_dim ** -0.5).to(tdtype)
            k = torch.randn(shape, device="cuda").to(tdtype)
            v = torch.randn(shape, device="cuda").to(tdtype)
            bias = None
            if mask == "bias":
                # MASK[M,P] with M fastest is [P][M] per head: SDPA's (L, S) attn_mask layout.
                hidden = torch.rand((batch, heads, n, n), device="cuda") < 0.2
                hidden &= ~torch.eye(n, dtype=torch.bool, device="cuda")  # no query loses every key
                bias = torch.where(hidden, float("-inf"), 0.5 * torch.randn((batch, heads, n, n), device="cuda")).to(tdtype)
            out = torch.full_like(q, float("nan"))
            stream = torch.cuda.current_stream().cuda_stream
            pointers = [q.data_ptr(), k.data_ptr(), v.data_ptr()] + ([bias.data_ptr()] if bias is not None else []) + [out.data_ptr()]

            def ours():
                # M0 = 0: the split's default inner size; the fused kernel tiles keys by block_n.
                return fn(*pointers, batch * heads, head_dim, head_dim, n, n, 0, stream)

            def sdpa(x, y, z, b):
                return F.scaled_dot_product_attention(x, y, z, attn_mask=b, is_causal=causal, scale=1.0)

            rc = ours()
            torch.cuda.synchronize()
            ref = sdpa(q.float(), k.float(), v.float(), None if bias is None else bias.float())
            finite = bool(torch.isfinite(out).all())
            err = float((out.float() - ref).abs().max() / ref.abs().max()) if finite else float("nan")
            ok = rc == 0 and finite and err <= TOLERANCE[dtype]
            all_ok &= ok
            flops = 4 * batch * heads * n * n * head_dim / (2 if causal else 1)
            row = {"dtype": dtype, "head_dim": head_dim, "mask": mask, "schedule": tag or "default", "batch": batch, "heads": heads,
                   "length": n, "rc": rc, "max_rel_err": err, "ok": ok}
            if ok and n >= 512 and n % 512 == 0:
                ms = time_ms(torch, ours, args.warmup, args.iters)
                row["cascade_ms"], row["cascade_tflops"] = ms, flops / ms / 1e9
                for name, backend in backends:
                    try:
                        with sdpa_kernel(backend):
                            ms = time_ms(torch, lambda q=q, k=k, v=v, b=bias: sdpa(q, k, v, b), args.warmup, args.iters)
                        row[f"{name}_tflops"] = flops / ms / 1e9
                    except RuntimeError:
                        row[f"{name}_tflops"] = None
            rows.append(row)
            print(json.dumps(row), flush=True)
            del q, k, v, out, ref, bias

    def cell(x, fmt="{:.0f}"):
        return "-" if x is None else fmt.format(x)

    lines = [f"# Fused cascade kernels vs PyTorch SDPA on {device}", "",
             f"torch {torch.__version__}; nvcc {arch}; median of {args.iters} runs after {args.warmup} warm-ups (CUDA events); "
             "TFLOP/s = 4·B·H·N²·D (÷2 causal) / time. SDPA backends named explicitly; '-' = backend refused the problem.", "",
             "| dtype | hd | mask | schedule | B | H | N | max rel err | ok | cascade TFLOP/s | flash | cuDNN | efficient | cascade / flash |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (r["cascade_tflops"] / r["flash_tflops"]) if r.get("cascade_tflops") and r.get("flash_tflops") else None
        lines.append(f"| {r['dtype']} | {r['head_dim']} | {r['mask']} | {r['schedule']} | {r['batch']} | {r['heads']} | {r['length']} | "
                     f"{r['max_rel_err']:.1e} | {'yes' if r['ok'] else '**NO**'} | {cell(r.get('cascade_tflops'))} | "
                     f"{cell(r.get('flash_tflops'))} | {cell(r.get('cudnn_tflops'))} | {cell(r.get('efficient_tflops'))} | "
                     f"{cell(ratio, '{:.0%}')} |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.md").write_text(table)
    (args.out / "gpu_check.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    print("all correct" if all_ok else "SOME CASES FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
