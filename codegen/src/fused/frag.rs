//! Which score and output elements each lane of a warp holds, for each matrix path, as C
//! expressions over `lane`, the tile index `j` (or `dj`) and the element index `i` of a
//! four-element fragment. The kernel's online softmax is written once against these: row
//! maxima and sums reduce a lane's elements of one row slot and then across the lanes that
//! share the row (`xor_masks`).
//!
//! * `mma.sync.m16n8k16` (PTX ISA, "Matrix Fragments for mma.m16n8k16"): lane `(g, t) =
//!   (lane/4, lane%4)` holds rows `g` and `g+8` of its warp's 16-row slice, columns `2t, 2t+1`
//!   of every 8-column tile; the four lanes of a row differ in `lane % 4`.
//! * `v_mfma_f32_16x16x16` (AMD CDNA; A: lane `l` holds row `l%16`, k `4(l/16)..+3`; B: column
//!   `l%16`, k `4(l/16)..+3`; C/D: column `l%16`, rows `4(l/16)..+3`): the kernel computes the
//!   transposes `Sᵀ = K·Qᵀ` and `Oᵀ = Vᵀ·Pᵀ`, so lane `l` holds one query `l%16` and keys (or
//!   features) `4(l/16)..+3` of every 16-wide tile. The probabilities are then already the B
//!   operand of the second product, as in FlashAttention-2's register reuse; the four lanes of
//!   a query differ in `l / 16`.
//! * SIMT: the m16n8k16 ownership over 32-lane halves of a warp (64-lane waves own 32 rows).

use crate::dialect::MatrixPath;

/// The fragment ownership of one matrix path (template fields).
#[derive(Debug, Clone)]
pub struct FragLayout {
    /// Row slots (distinct query rows) a lane holds.
    pub row_slots: u32,
    /// Score tiles per key tile and output tiles per head dimension (four elements each).
    pub s_tiles: u32,
    pub o_tiles: u32,
    /// 16-deep steps of the two products.
    pub qk_ksteps: u32,
    pub pv_ksteps: u32,
    /// The row slot of element `i`.
    pub slot: String,
    /// The row (within the warp's rows) of element `i`, and of row slot `r`.
    pub row: String,
    pub slot_row: String,
    /// The key of element `i` of score tile `j`, and the feature of element `i` of output
    /// tile `dj`.
    pub s_col: String,
    pub o_col: String,
    /// The lane that writes its rows' per-row outputs.
    pub leader: String,
    /// Lane masks whose XOR shuffles reduce over the lanes of a row.
    pub xor_masks: Vec<u32>,
}

impl FragLayout {
    pub fn of(matrix: MatrixPath, head_dim: u32, block_n: u32) -> FragLayout {
        let (qk_ksteps, pv_ksteps) = (head_dim / 16, block_n / 16);
        match matrix {
            MatrixPath::Mfma16x16x16 => FragLayout {
                row_slots: 1,
                s_tiles: block_n / 16,
                o_tiles: head_dim / 16,
                qk_ksteps,
                pv_ksteps,
                slot: "0".into(),
                row: "(lane % 16)".into(),
                slot_row: "(lane % 16)".into(),
                s_col: "(j * 16 + 4 * (lane / 16) + i)".into(),
                o_col: "(dj * 16 + 4 * (lane / 16) + i)".into(),
                leader: "(lane / 16 == 0)".into(),
                xor_masks: vec![16, 32],
            },
            // m16n8k16 and SIMT share the ownership; a 64-lane wave's upper half owns rows 16..31.
            _ => FragLayout {
                row_slots: 2,
                s_tiles: block_n / 8,
                o_tiles: head_dim / 8,
                qk_ksteps,
                pv_ksteps,
                slot: "(i >> 1)".into(),
                row: "((lane % 32) / 4 + 8 * (i >> 1) + 16 * (lane / 32))".into(),
                slot_row: "((lane % 32) / 4 + 8 * r + 16 * (lane / 32))".into(),
                s_col: "(j * 8 + 2 * (lane % 4) + (i & 1))".into(),
                o_col: "(dj * 8 + 2 * (lane % 4) + (i & 1))".into(),
                leader: "(lane % 4 == 0)".into(),
                xor_masks: vec![1, 2],
            },
        }
    }
}
