{% include "common/prelude.cu" %}
namespace {

typedef float elem_t;

constexpr int HEAD_DIM = {{ p.head_dim }};
constexpr int BLOCK_M = {{ p.block_m }};
constexpr int BLOCK_N = {{ p.block_n }};
constexpr int TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2;

// exp(x - c) is 0 whenever x = -inf (also c = -inf), and 0/0 is 0: fully masked rows give zeros.
{{ d.device_fn }} float cascade_subexp(float x, float c) { return x == -INFINITY ? 0.0f : std::exp(x - c); }
{{ d.device_fn }} float cascade_div(float a, float b) { return (a == 0.0f && b == 0.0f) ? 0.0f : a / b; }
{{ d.device_fn }} float to_f(float x) { return x; }
// The operator table's helpers (cascade_ir::ops::UNARY).
{% for h in p.op_helpers %}{{ d.device_fn }} {{ h }}
{% endfor %}
{{ d.device_fn }} bool cascade_visible(long long tile, long long col, long long row_p, long long n_keys, long long n_queries{{ p.param_decls }}) {
  (void)tile; (void)col; (void)row_p; (void)n_keys; (void)n_queries;
  return {{ p.mask_elem }};
}

{{ d.device_fn }} int cascade_tile_state(long long tile, long long p_lo, long long p_hi, long long n_keys, long long n_queries{{ p.param_decls }}) {
  (void)tile; (void)p_lo; (void)p_hi; (void)n_keys; (void)n_queries;
{% for line in p.tile_state %}  {{ line }}
{% endfor %}}

// The GPU kernel's plan on one core: the same query and key/value tiles, the same skipped tiles,
// and per row the same online update order (scores, local max, running max, numerators,
// local denominator, rescale, running denominator, rescaled numerator + P·V, final division).
void cascade_fused_one(const float* q, const float* k, const float* v, float* out, const float* bias, long long n_queries, long long n_keys{{ p.param_decls }}) {
  const long long n_tiles = (n_keys + BLOCK_N - 1) / BLOCK_N;
  std::vector<float> o(static_cast<size_t>(BLOCK_M) * HEAD_DIM), rm(BLOCK_M), rd(BLOCK_M), s(BLOCK_N);
  for (long long p0 = 0; p0 < n_queries; p0 += BLOCK_M) {
    const long long p_lo = p0, p_hi = std::min(p0 + BLOCK_M, n_queries) - 1;
    std::fill(o.begin(), o.end(), 0.0f);
    std::fill(rm.begin(), rm.end(), -INFINITY);
    std::fill(rd.begin(), rd.end(), 0.0f);
    for (long long tile = 0; tile < n_tiles; ++tile) {
      const int state = cascade_tile_state(tile, p_lo, p_hi, n_keys, n_queries{{ p.param_args }});
      if (state == TILE_SKIP) continue;
      for (long long r = 0; r < BLOCK_M && p0 + r < n_queries; ++r) {
        const long long row_p = p0 + r;
{% for role in p.roles %}        // {{ role }}
{% endfor %}        float lm = -INFINITY;
        for (long long col = 0; col < BLOCK_N; ++col) {
          const long long key = tile * BLOCK_N + col;
          float acc = 0.0f;
          if (key < n_keys)
            for (int e = 0; e < HEAD_DIM; ++e) acc += q[row_p * HEAD_DIM + e] * k[key * HEAD_DIM + e];
          const float s_qk = acc * {{ p.score_scale }};
          const float bias_val = {{ p.bias_load }};
          (void)bias_val;
          acc = {{ p.score_expr }};
          if (state != TILE_FULL && !cascade_visible(tile, col, row_p, n_keys, n_queries{{ p.param_args }})) acc = -INFINITY;
          s[col] = acc;
          lm = std::max(lm, acc);
        }
        const float rm_old = rm[r];
        const float rm_new = {{ p.rm_update }};
        float sld = 0.0f;
        for (long long col = 0; col < BLOCK_N; ++col) {
          const float s_val = s[col];
          s[col] = {{ p.sln_expr }};
          sld += s[col];
        }
        const float prm = {{ p.prm_expr }};
        const float rd_old = rd[r];
        rd[r] = {{ p.rd_update }};
        for (int d = 0; d < HEAD_DIM; ++d) {
          const float o_old = o[r * HEAD_DIM + d];
          float pv = 0.0f;
          for (long long col = 0; col < BLOCK_N; ++col) {
            const long long key = tile * BLOCK_N + col;
            if (key < n_keys) pv += s[col] * v[key * HEAD_DIM + d];
          }
          o[r * HEAD_DIM + d] = {{ p.rnv_rescale }} + pv;
        }
        rm[r] = rm_new;
      }
    }
    for (long long r = 0; r < BLOCK_M && p0 + r < n_queries; ++r) {
      for (int d = 0; d < HEAD_DIM; ++d) {
        const float o_fin = o[r * HEAD_DIM + d], rd_fin = rd[r];
        out[(p0 + r) * HEAD_DIM + d] = {{ p.out_expr }};
      }
    }
  }
}

}  // namespace

extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
{% for line in p.size_setup %}  {{ line }}
{% endfor %}  if ({{ p.shape_check }}) return CASCADE_ERR_SHAPE;
  for (long long b = 0; b < batch; ++b) {
    cascade_fused_one({{ p.cpp_args }});
  }
  return CASCADE_OK;
}
