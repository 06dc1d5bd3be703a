#!/usr/bin/env python3
"""Tests of tools/gpu_check.py that need no GPU and no PyTorch: the subprocess-per-variant
orchestration with fake children (rows appended as they finish, a timeout or crash costing one
variant, the budget), the mask pair counts against brute force, the launcher prototype parser,
argument errors, and `--generate-only --no-compile` with the cascade CLI (CASCADE_BIN, when
set) writing every variant's fused source and the manifest.

    python3 tools/test_gpu_check.py
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # noqa: E402


def fake_child(rows_path: Path, behaviour: dict):
    """A child command: prints rows into the table file as the real child does, then acts as
    `behaviour[variant]` says (ok, fail, crash, hang)."""

    def command(variant):
        act = behaviour.get(variant, "ok")
        code = (
            "import json, sys, time\n"
            f"p = {str(rows_path)!r}\n"
            f"v = {variant!r}\n"
            "with open(p, 'a') as f:\n"
            "    f.write(json.dumps({'variant': v, 'kind': 'check', 'ok': " + ("False" if act == "fail" else "True") + ", 'device': 'fake'}) + '\\n')\n"
            + ("time.sleep(30)\n" if act == "hang" else "")
            + ("sys.exit(3)\n" if act == "crash" else "")
        )
        return [sys.executable, "-c", code]

    return command


class Orchestration(unittest.TestCase):
    def test_rows_survive_a_hang_and_a_crash_and_every_variant_runs(self):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)
            behaviour = {"b": "hang", "c": "crash", "d": "fail"}
            rows = gpu_check.orchestrate(["a", "b", "c", "d", "e"], fake_child(out / "gpu_check.jsonl", behaviour),
                                         out, budget_s=60, per_variant_s=2)
            by = {}
            for r in rows:
                by.setdefault(r["variant"], []).append(r)
            self.assertEqual(sorted(by), ["a", "b", "c", "d", "e"])
            # The hung variant keeps the row it wrote before it was killed, plus the timeout.
            self.assertTrue(by["b"][0]["ok"])
            self.assertIn("timed out", by["b"][1]["error"])
            self.assertIn("exited with 3", by["c"][1]["error"])
            self.assertFalse(by["d"][0]["ok"])
            self.assertTrue(by["e"][0]["ok"])
            table = (out / "gpu_check.md").read_text()
            self.assertIn("on fake", table)
            self.assertIn("**NO**", table)
            self.assertEqual(table.count("\n| e |"), 1)

    def test_the_budget_skips_what_does_not_fit(self):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)
            ticks = iter([0.0, 0.0, 100.0, 100.0, 100.0])
            rows = gpu_check.orchestrate(["a", "b"], fake_child(out / "gpu_check.jsonl", {}), out,
                                         budget_s=50, per_variant_s=10, clock=lambda: next(ticks))
            errors = [r.get("error", "") for r in rows if r["variant"] == "b"]
            self.assertEqual(errors, ["skipped: the time budget is spent"])

    def test_a_row_cut_off_mid_line_is_ignored(self):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "rows.jsonl"
            p.write_text(json.dumps({"variant": "a", "ok": True}) + "\n{\"variant\": \"b\", \"o")
            self.assertEqual([r["variant"] for r in gpu_check.read_rows(p)], ["a"])


class Formulas(unittest.TestCase):
    def test_visible_pairs_match_the_masks_point_by_point(self):
        for mask in ("none", "causal", "causal_br", "window", "sinks_window"):
            for nq, nk in ((1, 9), (7, 7), (5, 12), (300, 300), (40, 600)):
                brute = sum(gpu_check.keep(mask, p, m, nq, nk) for p in range(nq) for m in range(nk))
                self.assertEqual(gpu_check.visible_pairs(mask, nq, nk), brute, (mask, nq, nk))

    def test_prototype_parser_reads_pointers_sizes_workspace_and_stream(self):
        header = ("#define CASCADE_OK 0\n\nint cascade_gc_x(const void* Q, const void* K, const void* V, void* AV, "
                  "int batch, long long E, long long M, void* workspace, unsigned long long workspace_bytes, "
                  "void* stream_ptr);\nunsigned long long cascade_gc_x_workspace_bytes(int batch, long long E, long long M);\n")
        symbol, params = gpu_check.parse_prototype(header)
        self.assertEqual(symbol, "cascade_gc_x")
        self.assertEqual([n for _, n in params],
                         ["Q", "K", "V", "AV", "batch", "E", "M", "workspace", "workspace_bytes", "stream_ptr"])
        self.assertEqual(params[8][0], "unsigned long long")

    def test_every_variant_has_a_known_mask_and_sizes_for_its_abi(self):
        for v, spec in gpu_check.VARIANTS.items():
            for hd in spec["hds"]:
                for timing in (False, True):
                    pb = gpu_check.problem(v, hd, 4096, timing)
                    self.assertGreater(gpu_check.visible_pairs(spec["mask"], min(pb["NQ"], 64), min(pb["NK"], 64)), 0)
                    sizes = gpu_check.sizes_for(v, hd, pb)
                    self.assertEqual(sizes["E"], hd)


class CommandLine(unittest.TestCase):
    def test_unknown_variants_and_missing_kernels_are_usage_errors(self):
        script = str(Path(gpu_check.__file__))
        res = subprocess.run([sys.executable, script, "--variants", "mha,nope", "--kernels", "/nonexistent"],
                             capture_output=True, text=True)
        self.assertEqual(res.returncode, 2)
        self.assertIn("unknown variants ['nope']", res.stderr)
        res = subprocess.run([sys.executable, script, "--kernels", "/nonexistent"], capture_output=True, text=True)
        self.assertEqual(res.returncode, 2)
        self.assertIn("--generate-only", res.stderr)

    @unittest.skipUnless(os.environ.get("CASCADE_BIN"), "CASCADE_BIN names the cascade CLI to generate with")
    def test_generate_only_writes_every_fused_source_and_the_manifest(self):
        with tempfile.TemporaryDirectory() as d:
            kernels = Path(d) / "k"
            res = subprocess.run([sys.executable, str(Path(gpu_check.__file__)), "--generate-only", "--no-compile",
                                  "--cascade-bin", os.environ["CASCADE_BIN"], "--kernels", str(kernels)],
                                 capture_output=True, text=True)
            self.assertEqual(res.returncode, 0, res.stderr)
            manifest = json.loads((kernels / "manifest.json").read_text())
            names = {gpu_check.kernel_name(v, dt, hd) for v, dt, hd in gpu_check.builds()}
            self.assertEqual(set(manifest["entries"]), names)
            for name, entry in manifest["entries"].items():
                self.assertTrue(entry["fused"], f"{name}: {entry.get('plan')}")
                header = (kernels / entry["header"]).read_text()
                symbol, params = gpu_check.parse_prototype(header)
                self.assertEqual(symbol, f"cascade_{name}")
                pb = gpu_check.problem(entry["variant"], entry["head_dim"], 4096, True)
                sizes = gpu_check.sizes_for(entry["variant"], entry["head_dim"], pb)
                for kind, p in params:
                    if "*" not in kind and p not in ("batch", "workspace_bytes"):
                        self.assertIn(p, sizes, f"{name}: no size for {p}")
            split = manifest["entries"][gpu_check.kernel_name("decode_split_k", "bf16", 128)]
            self.assertIn("split-K + combine kernels", split["plan"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
