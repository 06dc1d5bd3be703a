constexpr int HEAD_DIM = {{ p.head_dim }};
constexpr int BLOCK_M = {{ p.block_m }};
constexpr int BLOCK_N = {{ p.block_n }};
constexpr int WARP_SIZE = {{ d.warp_size }};
constexpr int THREADS = {{ p.threads }};
constexpr int ROWS_PER_WARP = {{ p.rows_per_warp }};
constexpr int STAGES = {{ p.stages }};
constexpr int SMEM_LD = {{ p.smem_ld }};
constexpr int S_TILES = {{ p.frag.s_tiles }};
constexpr int O_TILES = {{ p.frag.o_tiles }};
constexpr int QK_KSTEPS = {{ p.frag.qk_ksteps }};
constexpr int PV_KSTEPS = {{ p.frag.pv_ksteps }};
constexpr int ROW_SLOTS = {{ p.frag.row_slots }};
constexpr int CHUNKS_PER_ROW = {{ p.chunks_per_row }};
constexpr int ELEMS_PER_CHUNK = {{ p.elems_per_chunk }};
constexpr int Q_SMEM = {{ p.q_smem_elems }};
constexpr int KV_STAGE = {{ p.kv_stage_elems }};
constexpr int SMEM_BYTES = {{ p.smem_bytes }};
[[maybe_unused]] constexpr int N_ATOMS = {{ p.n_atoms }};
[[maybe_unused]] constexpr int N_ROWV = {{ p.n_rowv }};
[[maybe_unused]] constexpr int N_ROWE = {{ p.n_rowe }};
[[maybe_unused]] constexpr int TARGET_BLOCKS = {{ d.target_blocks }};
[[maybe_unused]] constexpr int TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2;
[[maybe_unused]] constexpr int CLASS_SKIP = 0, CLASS_GENERAL = 1, CLASS_FAST = 2;
[[maybe_unused]] constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;
static_assert(QK_KSTEPS * 16 == HEAD_DIM && PV_KSTEPS * 16 == BLOCK_N, "the products' steps cover the tiles");
static_assert(STAGES == 2, "double buffering");

{% include "common/helpers.cu" %}
{{ d.device_fn }} float shfl_xor(float x, int o) { return {{ d.shfl_xor_prefix }}x, o); }
{{ d.exp2_def }}
{{ d.async_copy_def }}
{{ d.vector_types_def }}

// The kernel's arguments: every rank size, the batch, head and split counts, the tensors, the
// strides (in elements) of the tensors it addresses by rows, and the folded score constant.
struct Args {
{% for f in p.args_fields %}  {{ f }}
{% endfor %}};

// Fragment ownership ({{ p.matrix_path }}): element i of score tile j is key frag_s_col(lane, j, i)
// of row frag_row(lane, i) of the warp's rows, in row slot frag_slot(i); output tile dj likewise
// with feature frag_o_col(lane, dj, i). The lanes of a row combine with XOR shuffles.
{{ d.device_fn }} constexpr int frag_slot(int i) { return {{ p.frag.slot }}; }
{{ d.device_fn }} int frag_row(int lane, int i) { (void)lane; (void)i; return {{ p.frag.row }}; }
{{ d.device_fn }} int frag_slot_row(int lane, int r) { (void)lane; (void)r; return {{ p.frag.slot_row }}; }
{{ d.device_fn }} int frag_s_col(int lane, int j, int i) { return {{ p.frag.s_col }}; }
{{ d.device_fn }} int frag_o_col(int lane, int dj, int i) { return {{ p.frag.o_col }}; }
{{ d.device_fn }} bool frag_row_leader(int lane) { return {{ p.frag.leader }}; }
{{ d.device_fn }} float frag_row_max(float x) {
{% for m in p.frag.xor_masks %}  x = fmaxf(x, shfl_xor(x, {{ m }}));
{% endfor %}  return x;
}
{{ d.device_fn }} float frag_row_sum(float x) {
{% for m in p.frag.xor_masks %}  x += shfl_xor(x, {{ m }});
{% endfor %}  return x;
}
