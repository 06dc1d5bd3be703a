{% include "common/prelude.cu" %}
namespace {

typedef {{ ty.elem }} elem_t;

constexpr int HEAD_DIM = {{ p.head_dim }};
constexpr int BLOCK_M = {{ p.block_m }};
constexpr int BLOCK_N = {{ p.block_n }};
constexpr int WARP_SIZE = {{ d.warp_size }};
constexpr int THREADS = {{ p.threads }};
constexpr int ROWS_PER_WARP = {{ p.rows_per_warp }};
constexpr int STAGES = {{ p.stages }};
constexpr int SMEM_LD = {{ p.smem_ld }};
constexpr int S_TILES = {{ p.s_tiles }};
constexpr int O_TILES = {{ p.o_tiles }};
constexpr int QK_KSTEPS = {{ p.qk_ksteps }};
constexpr int PV_KSTEPS = {{ p.pv_ksteps }};
constexpr int CHUNKS_PER_ROW = {{ p.chunks_per_row }};
constexpr int ELEMS_PER_CHUNK = {{ p.elems_per_chunk }};
constexpr int Q_SMEM = {{ p.q_smem_elems }};
constexpr int KV_STAGE = {{ p.kv_stage_elems }};
constexpr int SMEM_BYTES = {{ p.smem_bytes }};
constexpr int TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2;
static_assert(QK_KSTEPS * 16 == HEAD_DIM && PV_KSTEPS * 16 == BLOCK_N, "MMA steps cover the tiles");
static_assert(STAGES == 2, "double buffering");

// exp(x - c) is 0 whenever x = -inf (also c = -inf), and 0/0 is 0: fully masked rows give zeros.
// The arguments are <= 0 here (x - running max), where the hardware exponential is accurate.
{{ d.device_fn }} float cascade_subexp(float x, float c) { return x == -INFINITY ? 0.0f : {{ d.fast_exp }}(x - c); }
{{ d.device_fn }} float cascade_div(float a, float b) { return (a == 0.0f && b == 0.0f) ? 0.0f : a / b; }
// The operator table's helpers (cascade_ir::ops::UNARY).
{% for h in p.op_helpers %}{{ d.device_fn }} {{ h }}
{% endfor %}{{ d.device_fn }} float cascade_f32_to_float(float x) { return x; }
{{ d.device_fn }} float cascade_float_to_f32(float x) { return x; }
{{ d.device_fn }} float to_f(elem_t x) { return {{ ty.to_float }}(x); }
{{ d.device_fn }} elem_t from_f(float x) { return {{ ty.from_float }}(x); }
{{ d.device_fn }} float shfl_xor(float x, int o) { return {{ d.shfl_xor_prefix }}x, o); }
{{ d.async_copy_def }}

// Is key `tile*BLOCK_N + col` visible to query `row_p`?
{{ d.device_fn }} bool cascade_visible(long long tile, long long col, long long row_p, long long n_keys, long long n_queries{{ p.param_decls }}) {
  (void)tile; (void)col; (void)row_p; (void)n_keys; (void)n_queries;
  return {{ p.mask_elem }};
}

// Key tile `tile` against queries [p_lo, p_hi]: bounds of each condition over the tile tell
// whether it holds for no score (skip), maybe some (partial: tested per score) or every one (full).
{{ d.device_fn }} int cascade_tile_state(long long tile, long long p_lo, long long p_hi, long long n_keys, long long n_queries{{ p.param_decls }}) {
  (void)tile; (void)p_lo; (void)p_hi; (void)n_keys; (void)n_queries;
{% for line in p.tile_state %}  {{ line }}
{% endfor %}}

{{ d.device_fn }} long long cascade_next_live_tile(long long from, long long n_tiles, long long p_lo, long long p_hi, long long n_keys, long long n_queries{{ p.param_decls }}) {
  while (from < n_tiles && cascade_tile_state(from, p_lo, p_hi, n_keys, n_queries{{ p.param_args }}) == TILE_SKIP) ++from;
  return from;
}

// Copies key/value tile `tile` into one stage; rows past the last key are zero-filled.
{{ d.device_fn }} void cascade_load_kv(elem_t* k_dst, elem_t* v_dst, const elem_t* k, const elem_t* v, long long tile, long long n_keys, int tid) {
  for (int i = tid; i < BLOCK_N * CHUNKS_PER_ROW; i += THREADS) {
    const int r = i / CHUNKS_PER_ROW, ch = i % CHUNKS_PER_ROW;
    const long long key = tile * BLOCK_N + r;
    const bool ok = key < n_keys;
    const long long src = (ok ? key : 0) * HEAD_DIM + ch * ELEMS_PER_CHUNK;
    {{ d.async_copy_16 }}(k_dst + r * SMEM_LD + ch * ELEMS_PER_CHUNK, k + src, ok);
    {{ d.async_copy_16 }}(v_dst + r * SMEM_LD + ch * ELEMS_PER_CHUNK, v + src, ok);
  }
}
{% if p.mma %}
// One m16n8k16 tensor-core MMA: c += a (16x16, row) * b (16x8, col), f32 accumulation.
{{ d.device_fn }} void cascade_mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "{{ p.mma_asm }}"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

{{ d.device_fn }} uint32_t cascade_pack2(float lo, float hi) {
  auto h = {{ ty.pack2 }}(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

{% if p.ldmatrix %}
// Four 8x8 16-bit matrices from shared memory in one instruction; lane l gives the address of
// row l % 8 of matrix l / 8 and receives, of matrix i, row l / 4, columns 2(l % 4)..+1 in r[i]
// (the transpose's with .trans).
{{ d.device_fn }} void cascade_ldsm_x4(uint32_t* r, const elem_t* p) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("{{ p.ldsm_asm }}" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

{{ d.device_fn }} void cascade_ldsm_x4_trans(uint32_t* r, const elem_t* p) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("{{ p.ldsm_trans_asm }}" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
{% endif %}
// Scores of this lane's fragment: s[j][i] is row g (+8 for i >= 2), column j*8 + 2t + (i & 1).
{{ d.device_fn }} void cascade_scores(float (&s)[S_TILES][4], const uint32_t (&qa)[QK_KSTEPS][4], const elem_t* q_s, const elem_t* kt, int row0, int g, int t) {
  (void)q_s; (void)row0;
#pragma unroll
  for (int j = 0; j < S_TILES; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
{% if p.ldmatrix %}
  // Matrices 0-3: keys of tile j then j+1, head columns 0-7 then 8-15 of the step: b0, b1 of each.
  const int lane = threadIdx.x % 32, quarter = lane / 8;
  (void)g; (void)t;
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk) {
#pragma unroll
    for (int j = 0; j < S_TILES; j += 2) {
      uint32_t b[4];
      cascade_ldsm_x4(b, kt + ((j + (quarter >> 1)) * 8 + lane % 8) * SMEM_LD + kk * 16 + (quarter & 1) * 8);
      cascade_mma(s[j], qa[kk], b[0], b[1]);
      cascade_mma(s[j + 1], qa[kk], b[2], b[3]);
    }
  }
{% else %}
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk) {
#pragma unroll
    for (int j = 0; j < S_TILES; ++j) {
      const elem_t* kb = kt + (j * 8 + g) * SMEM_LD + kk * 16 + 2 * t;
      cascade_mma(s[j], qa[kk], *reinterpret_cast<const uint32_t*>(kb), *reinterpret_cast<const uint32_t*>(kb + 8));
    }
  }
{% endif %}
}

// o += P V with P from registers: two adjacent score tiles form one A fragment (FA2's reuse).
{{ d.device_fn }} void cascade_pv(float (&o)[O_TILES][4], const float (&s)[S_TILES][4], const elem_t* vt, float* p_s, int row0, int g, int t) {
  (void)p_s; (void)row0;
#pragma unroll
  for (int kk = 0; kk < PV_KSTEPS; ++kk) {
    const uint32_t a[4] = {cascade_pack2(s[2 * kk][0], s[2 * kk][1]), cascade_pack2(s[2 * kk][2], s[2 * kk][3]),
                           cascade_pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]), cascade_pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
{% if p.ldmatrix %}
    // Transposed matrices 0-3: keys 0-7 then 8-15 of the step, head columns of tile dj then dj+1.
    const int lane = threadIdx.x % 32, quarter = lane / 8;
    (void)g; (void)t;
#pragma unroll
    for (int dj = 0; dj < O_TILES; dj += 2) {
      uint32_t b[4];
      cascade_ldsm_x4_trans(b, vt + (kk * 16 + (quarter & 1) * 8 + lane % 8) * SMEM_LD + (dj + (quarter >> 1)) * 8);
      cascade_mma(o[dj], a, b[0], b[1]);
      cascade_mma(o[dj + 1], a, b[2], b[3]);
    }
{% else %}
    const unsigned short* vb = reinterpret_cast<const unsigned short*>(vt);
    const int key = kk * 16 + 2 * t;
#pragma unroll
    for (int dj = 0; dj < O_TILES; ++dj) {
      const int col = dj * 8 + g;
      const uint32_t b0 = vb[key * SMEM_LD + col] | (uint32_t(vb[(key + 1) * SMEM_LD + col]) << 16);
      const uint32_t b1 = vb[(key + 8) * SMEM_LD + col] | (uint32_t(vb[(key + 9) * SMEM_LD + col]) << 16);
      cascade_mma(o[dj], a, b0, b1);
    }
{% endif %}
  }
}
{% else %}
// Portable path: each lane computes the same fragment elements an m16n8k16 MMA would give it,
// with scalar FMAs from shared memory, so the online-softmax code is shared with the MMA path.
{{ d.device_fn }} void cascade_scores(float (&s)[S_TILES][4], const uint32_t (&qa)[1][4], const elem_t* q_s, const elem_t* kt, int row0, int g, int t) {
  (void)qa;
  for (int j = 0; j < S_TILES; ++j) {
    for (int i = 0; i < 4; ++i) {
      const elem_t* qr = q_s + (row0 + g + (i >> 1) * 8) * SMEM_LD;
      const elem_t* kr = kt + (j * 8 + 2 * t + (i & 1)) * SMEM_LD;
      float acc = 0.0f;
      for (int e = 0; e < HEAD_DIM; ++e) acc += to_f(qr[e]) * to_f(kr[e]);
      s[j][i] = acc;
    }
  }
}

{{ d.device_fn }} void cascade_pv(float (&o)[O_TILES][4], const float (&s)[S_TILES][4], const elem_t* vt, float* p_s, int row0, int g, int t) {
  for (int j = 0; j < S_TILES; ++j)
    for (int i = 0; i < 4; ++i) p_s[(row0 + g + (i >> 1) * 8) * BLOCK_N + j * 8 + 2 * t + (i & 1)] = s[j][i];
  __syncthreads();
  for (int dj = 0; dj < O_TILES; ++dj) {
    for (int i = 0; i < 4; ++i) {
      const float* pr = p_s + (row0 + g + (i >> 1) * 8) * BLOCK_N;
      const int col = dj * 8 + 2 * t + (i & 1);
      float acc = 0.0f;
      for (int key = 0; key < BLOCK_N; ++key) acc += pr[key] * to_f(vt[key * SMEM_LD + col]);
      o[dj][i] += acc;
    }
  }
  __syncthreads();
}
{% endif %}
// One query tile of BLOCK_M rows per block (blockIdx.x) and one batch entry per blockIdx.y.
// Each warp owns ROWS_PER_WARP rows: lane (g, t) holds rows g and g+8 of its 16-row slice.
{{ d.kernel_qualifier }} void __launch_bounds__(THREADS, {{ p.min_blocks_per_sm }}) {{ p.kernel }}(const elem_t* __restrict__ q, const elem_t* __restrict__ k, const elem_t* __restrict__ v, elem_t* __restrict__ out, const elem_t* __restrict__ bias, long long n_queries, long long n_keys{{ p.param_decls }}) {
  extern __shared__ __align__(16) unsigned char cascade_smem[];
  elem_t* q_s = reinterpret_cast<elem_t*>(cascade_smem);
  elem_t* k_s = q_s + Q_SMEM;
  elem_t* v_s = k_s + STAGES * KV_STAGE;
  float* p_s = reinterpret_cast<float*>(v_s + STAGES * KV_STAGE);
  const long long bh = blockIdx.y;
  q += bh * n_queries * HEAD_DIM;
  k += bh * n_keys * HEAD_DIM;
  v += bh * n_keys * HEAD_DIM;
  out += bh * n_queries * HEAD_DIM;
  if (bias != nullptr) bias += bh * n_queries * n_keys;
  // Last query tile first: under a causal mask later tiles see more keys, so the longest
  // blocks start first and the short ones fill the tail.
  const long long p0 = static_cast<long long>(gridDim.x - 1 - blockIdx.x) * BLOCK_M;
  const int tid = threadIdx.x, warp = tid / WARP_SIZE, lane = tid % WARP_SIZE;
  const int g = (lane % 32) / 4, t = lane % 4;
  const int row0 = warp * ROWS_PER_WARP + (lane / 32) * 16;
  const long long n_tiles = (n_keys + BLOCK_N - 1) / BLOCK_N;
  const long long p_lo = p0, p_hi = (p0 + BLOCK_M < n_queries ? p0 + BLOCK_M : n_queries) - 1;

  for (int i = tid; i < BLOCK_M * CHUNKS_PER_ROW; i += THREADS) {
    const int r = i / CHUNKS_PER_ROW, ch = i % CHUNKS_PER_ROW;
    const bool ok = p0 + r < n_queries;
    {{ d.async_copy_16 }}(q_s + r * SMEM_LD + ch * ELEMS_PER_CHUNK, q + (ok ? p0 + r : 0) * HEAD_DIM + ch * ELEMS_PER_CHUNK, ok);
  }
  {{ d.async_commit }};
  long long cur = cascade_next_live_tile(0, n_tiles, p_lo, p_hi, n_keys, n_queries{{ p.param_args }});
  if (cur < n_tiles) cascade_load_kv(k_s, v_s, k, v, cur, n_keys, tid);
  {{ d.async_commit }};
  {{ d.async_wait_prev }};
  __syncthreads();
{% if p.mma %}
  uint32_t qa[QK_KSTEPS][4];
{% if p.ldmatrix %}
  // Matrices 0-3: rows 0-7, 8-15 of the warp's slice at columns 0-7, then at 8-15: a0..a3.
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk)
    cascade_ldsm_x4(qa[kk], q_s + (row0 + ((lane / 8) & 1) * 8 + lane % 8) * SMEM_LD + kk * 16 + (lane / 16) * 8);
{% else %}
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk) {
    const elem_t* qb = q_s + (row0 + g) * SMEM_LD + kk * 16 + 2 * t;
    qa[kk][0] = *reinterpret_cast<const uint32_t*>(qb);
    qa[kk][1] = *reinterpret_cast<const uint32_t*>(qb + 8 * SMEM_LD);
    qa[kk][2] = *reinterpret_cast<const uint32_t*>(qb + 8);
    qa[kk][3] = *reinterpret_cast<const uint32_t*>(qb + 8 * SMEM_LD + 8);
  }
{% endif %}
{% else %}
  const uint32_t qa[1][4] = {};
{% endif %}
  float o[O_TILES][4];
#pragma unroll
  for (int dj = 0; dj < O_TILES; ++dj) o[dj][0] = o[dj][1] = o[dj][2] = o[dj][3] = 0.0f;
  float rm[2] = {-INFINITY, -INFINITY};  // running max (state at m1 = 0)
  float rd[2] = {0.0f, 0.0f};            // running denominator, this lane's partial sum
  int stage = 0;
  while (cur < n_tiles) {
    const long long nxt = cascade_next_live_tile(cur + 1, n_tiles, p_lo, p_hi, n_keys, n_queries{{ p.param_args }});
    if (nxt < n_tiles) cascade_load_kv(k_s + (stage ^ 1) * KV_STAGE, v_s + (stage ^ 1) * KV_STAGE, k, v, nxt, n_keys, tid);
    {{ d.async_commit }};
    {{ d.async_wait_prev }};
    __syncthreads();
    const elem_t* kt = k_s + stage * KV_STAGE;
    const elem_t* vt = v_s + stage * KV_STAGE;
    const long long tile = cur;
    float s[S_TILES][4];
{% for role in p.roles %}    // {{ role }}
{% endfor %}    cascade_scores(s, qa, q_s, kt, row0, g, t);
    const bool partial = cascade_tile_state(tile, p_lo, p_hi, n_keys, n_queries{{ p.param_args }}) != TILE_FULL;
#pragma unroll
    for (int j = 0; j < S_TILES; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const long long col = j * 8 + 2 * t + (i & 1), row_p = p0 + row0 + g + (i >> 1) * 8;
        const long long key = tile * BLOCK_N + col;
        const float s_qk = s[j][i] * {{ p.score_scale }};
        const float bias_val = {{ p.bias_load }};
        (void)key; (void)bias_val;
        s[j][i] = {{ p.score_expr }};
        if (partial && !cascade_visible(tile, col, row_p, n_keys, n_queries{{ p.param_args }})) s[j][i] = -INFINITY;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lm = -INFINITY;  // local max over the tile's keys
#pragma unroll
      for (int j = 0; j < S_TILES; ++j) lm = fmaxf(lm, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
      lm = fmaxf(lm, shfl_xor(lm, 1));
      lm = fmaxf(lm, shfl_xor(lm, 2));
      const float rm_old = rm[r];
      const float rm_new = {{ p.rm_update }};
      float sld = 0.0f;
#pragma unroll
      for (int j = 0; j < S_TILES; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float s_val = s[j][2 * r + c];
          s[j][2 * r + c] = {{ p.sln_expr }};
          sld += s[j][2 * r + c];
        }
      }
      const float prm = {{ p.prm_expr }};
      const float rd_old = rd[r];
      rd[r] = {{ p.rd_update }};
#pragma unroll
      for (int dj = 0; dj < O_TILES; ++dj) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float o_old = o[dj][2 * r + c];
          o[dj][2 * r + c] = {{ p.rnv_rescale }};
        }
      }
      rm[r] = rm_new;
    }
    cascade_pv(o, s, vt, p_s, row0, g, t);
    __syncthreads();
    cur = nxt;
    stage ^= 1;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    rd[r] += shfl_xor(rd[r], 1);
    rd[r] += shfl_xor(rd[r], 2);
  }
#pragma unroll
  for (int dj = 0; dj < O_TILES; ++dj) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const long long row_p = p0 + row0 + g + (i >> 1) * 8;
      const float o_fin = o[dj][i], rd_fin = rd[i >> 1];
      if (row_p < n_queries) out[row_p * HEAD_DIM + dj * 8 + 2 * t + (i & 1)] = from_f({{ p.out_expr }});
    }
  }
}

}  // namespace

extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
  {{ d.stream_type }} stream = static_cast<{{ d.stream_type }}>(stream_ptr);
{% for line in p.size_setup %}  {{ line }}
{% endfor %}  if ({{ p.shape_check }}) return CASCADE_ERR_SHAPE;
  if (batch == 0) return CASCADE_OK;
  if ({{ set_smem }} != {{ d.success }}) return CASCADE_ERR_DEVICE;
  const dim3 grid(static_cast<unsigned>(({{ p.n_queries }} + BLOCK_M - 1) / BLOCK_M), static_cast<unsigned>(batch));
  const dim3 block(THREADS);
  {{ launch }}
  return {{ d.get_last_error }} == {{ d.success }} ? CASCADE_OK : CASCADE_ERR_DEVICE;
}
