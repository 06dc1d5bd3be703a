{% include "common/prelude.cu" %}
namespace {

typedef float elem_t;

constexpr int HEAD_DIM = {{ p.head_dim }};
constexpr int BLOCK_M = {{ p.block_m }};
constexpr int BLOCK_N = {{ p.block_n }};
[[maybe_unused]] constexpr int N_ATOMS = {{ p.n_atoms }};
[[maybe_unused]] constexpr int N_ROWV = {{ p.n_rowv }};
[[maybe_unused]] constexpr int N_ROWE = {{ p.n_rowe }};
[[maybe_unused]] constexpr int TARGET_BLOCKS = {{ d.target_blocks }};
[[maybe_unused]] constexpr int TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2;
[[maybe_unused]] constexpr int CLASS_SKIP = 0, CLASS_GENERAL = 1, CLASS_FAST = 2;
[[maybe_unused]] constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

{% include "common/helpers.cu" %}
{{ d.exp2_def }}

struct Args {
{% for f in p.args_fields %}  {{ f }}
{% endfor %}};

// One lane: it writes every per-row output.
{{ d.device_fn }} bool frag_row_leader(int lane) { (void)lane; return true; }
{{ d.device_fn }} int cascade_kmin(int x, int y) { return x < y ? x : y; }
{{ d.device_fn }} int cascade_kmax(int x, int y) { return x > y ? x : y; }

{{ d.device_fn }} int cascade_classify(int (&st)[N_ATOMS], long long k_lo, long long k_hi, long long p_lo, long long p_hi, long long k_end, const Args& a{{ p.head_params }}) {
  (void)k_lo; (void)k_hi; (void)p_lo; (void)p_hi; (void)k_end; (void)a; st[0] = TILE_FULL;
{% for line in p.classify %}  {{ line }}
{% endfor %}}

// The GPU kernel's plan on one core for one batch entry and head: the same key splits, query
// tiles and key tiles, the same skipped and fast tiles, the same scores in base 2 and, per row,
// the same online update (max, rescale, weights, denominator, numerator + P·V) and outputs.
void cascade_fused_one(const Args& a, long long bz, long long h) {
{% for line in p.head_decode %}  {{ line }}
{% endfor %}  const elem_t* q = {{ p.q_rows.base }};
  const elem_t* k = {{ p.k_rows.base }};
  const elem_t* v = {{ p.v_rows.base }};
  const long long q_seq = {{ p.q_rows.seq }}, k_seq = {{ p.k_rows.seq }}, v_seq = {{ p.v_rows.seq }};
  const long long n_queries = {{ p.n_queries }}, n_keys = {{ p.n_keys }};
  const long long n_e = {{ p.e_size }}, n_f = {{ p.f_size }};
  const int lane = 0;
  (void)lane;
  std::vector<float> o(static_cast<size_t>(BLOCK_M) * HEAD_DIM), rm(BLOCK_M), rd(BLOCK_M), s(BLOCK_N);
  float rowv[BLOCK_M][N_ROWV], rowe[BLOCK_M][N_ROWE];
  (void)rowv; (void)rowe;
  for (long long split = 0; split < a.n_splits; ++split) {
    const long long k_begin = split * a.keys_per_split;
    const long long k_end = std::min(k_begin + a.keys_per_split, n_keys);
    const long long n_tiles = k_end > k_begin ? (k_end - k_begin + BLOCK_N - 1) / BLOCK_N : 0;
    for (long long p0 = 0; p0 < n_queries; p0 += BLOCK_M) {
      const long long p_lo = p0, p_hi = std::min(p0 + BLOCK_M, n_queries) - 1;
      std::fill(o.begin(), o.end(), 0.0f);
      std::fill(rm.begin(), rm.end(), -INFINITY);
      std::fill(rd.begin(), rd.end(), 0.0f);
      for (int r = 0; r < BLOCK_M; ++r) {
        const long long row_p = p0 + r;
        const bool row_ok = row_p < n_queries;
        (void)row_ok; rowv[r][0] = 0.0f;
{% for line in p.row_setup %}        {{ line }}
{% endfor %}      }
      for (long long tile = 0; tile < n_tiles; ++tile) {
        const long long k_tile0 = k_begin + tile * BLOCK_N;
        int st[N_ATOMS];
        const int cls = cascade_classify(st, k_tile0, k_tile0 + BLOCK_N - 1, p_lo, p_hi, k_end, a{{ p.head_args }});
        if (cls == CLASS_SKIP) continue;
        for (int r = 0; r < BLOCK_M && p0 + r < n_queries; ++r) {
          const long long row_p = p0 + r;
          for (int col = 0; col < BLOCK_N; ++col) {
            const long long key = k_tile0 + col;
            float qk = 0.0f;
            if (key < k_end)
              for (long long e = 0; e < n_e; ++e) qk += q[row_p * q_seq + e] * k[key * k_seq + e];
            float sv;
            if (cls == CLASS_FAST) {
{% for line in p.score_fast %}              {{ line }}
{% endfor %}            } else {
{% for line in p.score_general %}              {{ line }}
{% endfor %}            }
            s[col] = sv;
          }
{% if p.softmax %}          float lm = -INFINITY;
          for (int col = 0; col < BLOCK_N; ++col) lm = std::max(lm, s[col]);
          const float rm_new = std::max(rm[r], lm);
          const float m_use = rm_new == -INFINITY ? 0.0f : rm_new;
          const float prm = cascade_exp2(rm[r] - m_use);
          float sld = 0.0f;
          for (int col = 0; col < BLOCK_N; ++col) {
            s[col] = cascade_exp2(s[col] - m_use);
            sld += s[col];
          }
          rd[r] = rd[r] * prm + sld;
          rm[r] = rm_new;
{% else %}          const float prm = 1.0f;
          float sld = 0.0f;
          for (int col = 0; col < BLOCK_N; ++col) sld += s[col];
          rd[r] += sld;
{% endif %}          for (long long f = 0; f < n_f; ++f) {
            float pv = 0.0f;
            for (int col = 0; col < BLOCK_N; ++col) {
              const long long key = k_tile0 + col;
              if (key < k_end) pv += s[col] * v[key * v_seq + f];
            }
            o[r * HEAD_DIM + f] = o[r * HEAD_DIM + f] * prm + pv;
          }
        }
      }
{% if p.split %}      // This split's partial results, as the GPU kernel writes them for its combine kernel.
      const long long part = ((bz * a.n_heads + h) * a.n_splits + split) * n_queries;
      const long long n_parts = a.batch * a.n_heads * a.n_splits * n_queries;
      for (int r = 0; r < BLOCK_M && p0 + r < n_queries; ++r) {
        const long long row_p = p0 + r;
        for (long long f = 0; f < n_f; ++f) a.ws[(part + row_p) * HEAD_DIM + f] = o[r * HEAD_DIM + f];
        a.ws[n_parts * HEAD_DIM + part + row_p] = rm[r];
        a.ws[n_parts * (HEAD_DIM + 1) + part + row_p] = rd[r];
      }
{% else %}      for (int r = 0; r < BLOCK_M && p0 + r < n_queries; ++r) {
        const long long row_p = p0 + r;
        const bool row_ok = true;
        const float rd_fin = rd[r], rm_fin = rm[r] * LN2;
        (void)row_ok; (void)rd_fin; (void)rm_fin; rowe[r][0] = 0.0f;
{% for line in p.epilogue_row %}        {{ line }}
{% endfor %}{% for line in p.row_stores %}        {{ line }}
{% endfor %}{% for out in p.elem_outputs %}        {
          elem_t* dst = {{ out.rows.base }};
          for (long long col_f = 0; col_f < n_f; ++col_f) {
            const float o_fin = o[r * HEAD_DIM + col_f];
            {{ out.value }}
            dst[row_p * {{ out.rows.seq }} + col_f] = from_f(ov);
          }
        }
{% endfor %}      }
{% endif %}    }
  }
}
{% if p.split %}
// The combine kernel's loop: per output element, the splits weighed by exp2(max - global max).
void cascade_combine(const Args& a) {
  const long long n_queries = {{ p.n_queries }}, n_f = {{ p.f_size }};
  const long long n_parts = a.batch * a.n_heads * a.n_splits * n_queries;
  for (long long bz = 0; bz < a.batch; ++bz)
    for (long long h = 0; h < a.n_heads; ++h) {
{% for line in p.head_decode %}      {{ line }}
{% endfor %}      for (long long row_p = 0; row_p < n_queries; ++row_p)
        for (long long col_f = 0; col_f < n_f; ++col_f) {
          const long long part0 = (bz * a.n_heads + h) * a.n_splits * n_queries + row_p;
          float mx = -INFINITY;
          for (long long sp = 0; sp < a.n_splits; ++sp) mx = std::max(mx, a.ws[n_parts * HEAD_DIM + part0 + sp * n_queries]);
          const float m_use = mx == -INFINITY ? 0.0f : mx;
          float num = 0.0f, den = 0.0f;
          for (long long sp = 0; sp < a.n_splits; ++sp) {
            const long long at = part0 + sp * n_queries;
            const float w = cascade_exp2(a.ws[n_parts * HEAD_DIM + at] - m_use);
            den += a.ws[n_parts * (HEAD_DIM + 1) + at] * w;
            num += a.ws[at * HEAD_DIM + col_f] * w;
          }
          const int r = 0;
          const bool row_ok = true;
          const float o_fin = num, rd_fin = den, rm_fin = mx * LN2;
          float rowe[1][N_ROWE];
          (void)r; (void)row_ok; (void)rm_fin; rowe[0][0] = 0.0f;
{% for line in p.epilogue_row %}          {{ line }}
{% endfor %}{% for out in p.elem_outputs %}          {
            {{ out.value }}
            elem_t* dst = {{ out.rows.base }};
            dst[row_p * {{ out.rows.seq }} + col_f] = from_f(ov);
          }
{% endfor %}        }
    }
}
{% endif %}
{% include "common/fused_args.cu" %}
}  // namespace

// Runs the kernels' loops on arguments already filled and checked.
static int {{ p.launcher }}_run(Args& a) {
  std::vector<float> ws({{ p.launcher }}_ws_bytes(a) / 4);
  a.ws = ws.data();
  for (long long bz = 0; bz < a.batch; ++bz)
    for (long long h = 0; h < a.n_heads; ++h) cascade_fused_one(a, bz, h);
{% if p.split %}  cascade_combine(a);
{% endif %}  return CASCADE_OK;
}

extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
  Args a{};
  const int rc = {{ p.launcher }}_args(a, {{ p.core_args }});
  if (rc != CASCADE_OK) return rc;
  return {{ p.launcher }}_run(a);
}

// The same with the caller's strides in elements instead of the cascade's layout:
// {{ p.stride_doc }}.
extern "C" int {{ p.launcher }}_strided({{ p.strided_params }}) {
  Args a{};
  const int rc = {{ p.launcher }}_args(a, {{ p.core_args }});
  if (rc != CASCADE_OK) return rc;
{% for f in p.stride_fields %}  a.{{ f }} = strides[{{ loop.index0 }}];
{% endfor %}  return {{ p.launcher }}_run(a);
}
