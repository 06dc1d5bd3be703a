// Scalar path: each lane computes with FMAs from shared memory the fragment elements an
// m16n8k16 MMA would give it, so the online softmax is the same as on the tensor-core path.
struct QFrags {
  int unused;
};

{{ d.device_fn }} void cascade_load_q(QFrags& qa, const elem_t* q_s, int row0, int lane) {
  (void)qa; (void)q_s; (void)row0; (void)lane;
}

{{ d.device_fn }} void cascade_scores(float (&s)[S_TILES][4], const QFrags& qa, const elem_t* q_s, const elem_t* kt, int row0, int lane) {
  (void)qa;
  for (int j = 0; j < S_TILES; ++j) {
    for (int i = 0; i < 4; ++i) {
      const elem_t* qr = q_s + (row0 + frag_row(lane, i)) * SMEM_LD;
      const elem_t* kr = kt + frag_s_col(lane, j, i) * SMEM_LD;
      float acc = 0.0f;
      for (int e = 0; e < HEAD_DIM; ++e) acc += to_f(qr[e]) * to_f(kr[e]);
      s[j][i] = acc;
    }
  }
}

{{ d.device_fn }} void cascade_pv(float (&o)[O_TILES][4], const float (&s)[S_TILES][4], const elem_t* vt, float* p_s, int row0, int lane) {
  for (int j = 0; j < S_TILES; ++j)
    for (int i = 0; i < 4; ++i) p_s[(row0 + frag_row(lane, i)) * BLOCK_N + frag_s_col(lane, j, i)] = s[j][i];
  __syncthreads();
  for (int dj = 0; dj < O_TILES; ++dj) {
    for (int i = 0; i < 4; ++i) {
      const float* pr = p_s + (row0 + frag_row(lane, i)) * BLOCK_N;
      const int col = frag_o_col(lane, dj, i);
      float acc = 0.0f;
      for (int key = 0; key < BLOCK_N; ++key) acc += pr[key] * to_f(vt[key * SMEM_LD + col]);
      o[dj][i] += acc;
    }
  }
  __syncthreads();
}
