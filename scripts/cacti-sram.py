#!/usr/bin/env python3
"""The global-buffer SRAM rows of a cost table (`[buffer] sram`), from CACTI 7.

Runs CACTI (https://github.com/HewlettPackard/cacti, commit 1ffd8df, built with `make opt`) for
an SRAM of 4096-bit rows (256 16-bit words), one read-write port, one bank, at 45 nm, with the
organisation and device settings the Accelergy CACTI plug-in (2024) passes it, which is how the
FuseMax artifact priced its global buffers. Prints one TOML entry per size: the energy of one
row read and one row write, the standby leakage per cycle at 940 MHz, the area.

    python3 scripts/cacti-sram.py /path/to/cacti > rows.toml
"""
import csv
import os
import subprocess
import sys
import tempfile

ROW_BITS = 4096
NODE_UM = 0.045
CYCLE_NS = 1e3 / 940.0
SIZES_MIB = [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256]

# The plug-in's fixed settings: low-standby-power cells and periphery, organisation chosen for
# leakage first, energy-delay squared.
SETTINGS = """\
-Array Power Gating - "false"
-WL Power Gating - "false"
-CL Power Gating - "false"
-Bitline floating - "false"
-Interconnect Power Gating - "false"
-Power Gating Performance Loss "default"
-exclusive read port 0
-exclusive write port 0
-single ended read ports 0
-page size (bits) 0
-burst length 8
-internal prefetch width 8
-Data array cell type - "itrs-lstp"
-Data array peripheral type - "itrs-lstp"
-Tag array cell type - "itrs-lstp"
-Tag array peripheral type - "itrs-lstp
-operating temperature (K) 300
-access mode (normal, sequential, fast) - "fast"
-design objective (weight delay, dynamic power, leakage power, cycle time, area) 0:0:1000000:0:0
-deviate (delay, dynamic power, leakage power, cycle time, area) 20:10:100000:100:100
-NUCAdesign objective (weight delay, dynamic power, leakage power, cycle time, area) 100:100:0:0:100
-NUCAdeviate (delay, dynamic power, leakage power, cycle time, area) 10:10000:10000:10000:10000
-Optimize ED or ED^2 (ED, ED^2, NONE): "ED^2"
-Cache model (NUCA, UCA)  - "UCA"
-NUCA bank count 0
-Wire signaling (fullswing, lowswing, default) - "Global_30"
-Wire inside mat - "semi-global"
-Wire outside mat - "semi-global"
-Interconnect projection - "normal"
-Core count 1
-Add ECC - "false"
-Print level (DETAILED, CONCISE) - "DETAILED"
-Print input parameters - "true"
-Force cache config - "false"
-Ndwl 1
-Ndbl 1
-Nspd 0
-Ndcm 1
-Ndsam1 0
-Ndsam2 0
# Off-chip I/O settings CACTI reads even for an on-chip SRAM (they do not enter its figures).
-dram_type "DDR3"
-io state "WRITE"
-addr_timing 1.0
-mem_density 4 Gb
-bus_freq 800 MHz
-duty_cycle 1.0
-activity_dq 1.0
-activity_ca 0.5
-num_dq 72
-num_dqs 18
-num_ca 25
-num_clk  2
-num_mem_dq 2
-mem_data_width 8
-rtt_value 10000
-ron_value 34
-tflight_value
-num_bobs 1
-capacity 80
-num_channels_per_bob 1
-first metric "Cost"
-second metric "Bandwidth"
-third metric "Energy"
-DIMM model "ALL"
-mirror_in_bob "F"
"""


def sram(cacti_dir, capacity_bytes):
    cfg = SETTINGS + "".join(
        line + "\n"
        for line in [
            f"-size (bytes) {capacity_bytes}",
            "-read-write port  1",
            f"-block size (bytes) {ROW_BITS // 8}",
            f"-technology (u) {NODE_UM}",
            f"-output/input bus width  {ROW_BITS}",
            "-UCA bank 1",
            '-cache type "ram"',
            "-tag size (b) 0",
            "-associativity 1",
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        f.write(cfg)
    try:
        subprocess.run(
            ["./cacti", "-infile", f.name],
            cwd=cacti_dir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        row = list(csv.DictReader(open(f.name + ".out")))[-1]
    finally:
        os.remove(f.name)
        if os.path.exists(f.name + ".out"):
            os.remove(f.name + ".out")
    return {
        "read_pj": float(row[" Dynamic read energy (nJ)"]) * 1e3,
        "write_pj": float(row[" Dynamic write energy (nJ)"]) * 1e3,
        "leak_pj_per_cycle": float(row[" Standby leakage per bank(mW)"]) * CYCLE_NS,
        "area_mm2": float(row[" Area (mm2)"]),
    }


def main():
    cacti_dir = sys.argv[1] if len(sys.argv) > 1 else "cacti"
    print("sram = [")
    for mib in SIZES_MIB:
        cap = int(mib * 2**20)
        s = sram(cacti_dir, cap)
        print(
            f"  {{ capacity_bytes = {cap}, read_pj = {s['read_pj']:.1f}, "
            f"write_pj = {s['write_pj']:.1f}, leak_pj_per_cycle = {s['leak_pj_per_cycle']:.4f}, "
            f"area_mm2 = {s['area_mm2']:.3f} }},  # {mib:g} MiB"
        )
    print("]")


if __name__ == "__main__":
    main()
