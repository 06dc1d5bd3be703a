// Matrix cores: v_mfma_f32_16x16x16 on the transposed products S^T = K Q^T and O^T = V^T P^T,
// so each lane holds one query of its wave's 16 and four consecutive keys (features) of every
// 16-wide tile (see frag_s_col), and the weights are already the second product's B operand.
typedef {{ ty.mfma_operand }} cascade_ab_t;
{{ ty.mfma_elem_def }}

{{ d.device_fn }} void cascade_mfma(float (&c)[4], cascade_ab_t x, cascade_ab_t y) {
  cascade_f32x4 acc = {c[0], c[1], c[2], c[3]};
  acc = {{ ty.mfma_builtin }}(x, y, acc, 0, 0, 0);
  c[0] = acc[0];
  c[1] = acc[1];
  c[2] = acc[2];
  c[3] = acc[3];
}

// Four consecutive 16-bit elements (8 bytes, aligned) as one operand.
{{ d.device_fn }} cascade_ab_t cascade_load4(const elem_t* p) { return *reinterpret_cast<const cascade_ab_t*>(p); }

// Four 16-bit elements `stride` elements apart.
{{ d.device_fn }} cascade_ab_t cascade_gather4(const elem_t* p, int stride) {
  cascade_ab_t r;
  for (int i = 0; i < 4; ++i) __builtin_memcpy(reinterpret_cast<char*>(&r) + 2 * i, p + i * stride, 2);
  return r;
}

// The queries as the B operand of the first product, kept in registers for the loop.
struct QFrags {
  cascade_ab_t b[QK_KSTEPS];
};

{{ d.device_fn }} void cascade_load_q(QFrags& qa, const elem_t* q_s, int row0, int lane) {
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk) qa.b[kk] = cascade_load4(q_s + (row0 + lane % 16) * SMEM_LD + kk * 16 + 4 * (lane / 16));
}

// A: keys j*16 + lane%16, head columns 4(lane/16)..+3 of each 16-deep step.
{{ d.device_fn }} void cascade_scores(float (&s)[S_TILES][4], const QFrags& qa, const elem_t* q_s, const elem_t* kt, int row0, int lane) {
  (void)q_s; (void)row0;
#pragma unroll
  for (int j = 0; j < S_TILES; ++j) {
    s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < QK_KSTEPS; ++kk) cascade_mfma(s[j], cascade_load4(kt + (j * 16 + lane % 16) * SMEM_LD + kk * 16 + 4 * (lane / 16)), qa.b[kk]);
  }
}

// A: features dj*16 + lane%16 of keys 4(lane/16)..+3 of step kk (V^T); B: this lane's weights.
{{ d.device_fn }} void cascade_pv(float (&o)[O_TILES][4], const float (&s)[S_TILES][4], const elem_t* vt, float* p_s, int row0, int lane) {
  (void)p_s; (void)row0;
#pragma unroll
  for (int kk = 0; kk < PV_KSTEPS; ++kk) {
    const cascade_ab_t w = {cascade_mfma_elem(s[kk][0]), cascade_mfma_elem(s[kk][1]), cascade_mfma_elem(s[kk][2]), cascade_mfma_elem(s[kk][3])};
#pragma unroll
    for (int dj = 0; dj < O_TILES; ++dj) cascade_mfma(o[dj], cascade_gather4(vt + (kk * 16 + 4 * (lane / 16)) * SMEM_LD + dj * 16 + lane % 16, SMEM_LD), w);
  }
}
