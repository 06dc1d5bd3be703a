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
// One 16-column step of the warp's query rows as the A fragment of the first product.
{{ d.device_fn }} void cascade_q_frag(uint32_t (&r)[4], const elem_t* q_s, int row0, int lane, int kk) {
{% if p.ldmatrix %}  // Matrices 0-3: rows 0-7, 8-15 of the warp's slice at columns 0-7, then at 8-15: a0..a3.
  cascade_ldsm_x4(r, q_s + (row0 + ((lane / 8) & 1) * 8 + lane % 8) * SMEM_LD + kk * 16 + (lane / 16) * 8);
{% else %}  const elem_t* qb = q_s + (row0 + lane / 4) * SMEM_LD + kk * 16 + 2 * (lane % 4);
  r[0] = *reinterpret_cast<const uint32_t*>(qb);
  r[1] = *reinterpret_cast<const uint32_t*>(qb + 8 * SMEM_LD);
  r[2] = *reinterpret_cast<const uint32_t*>(qb + 8);
  r[3] = *reinterpret_cast<const uint32_t*>(qb + 8 * SMEM_LD + 8);
{% endif %}}

{% if p.q_in_registers %}// The query fragments stay in registers for the whole key loop.
struct QFrags {
  uint32_t a[QK_KSTEPS][4];
};

{{ d.device_fn }} void cascade_load_q(QFrags& qa, const elem_t* q_s, int row0, int lane) {
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk) cascade_q_frag(qa.a[kk], q_s, row0, lane, kk);
}
{% else %}// The query fragments are reloaded from shared memory for each key tile (the plan keeps their
// registers for the accumulators).
struct QFrags {
  int unused;
};

{{ d.device_fn }} void cascade_load_q(QFrags& qa, const elem_t* q_s, int row0, int lane) {
  (void)qa; (void)q_s; (void)row0; (void)lane;
}
{% endif %}
// Raw scores Q·K of this lane's fragment (see frag_s_col / frag_row).
{{ d.device_fn }} void cascade_scores(float (&s)[S_TILES][4], const QFrags& qa, const elem_t* q_s, const elem_t* kt, int row0, int lane) {
  (void)qa; (void)q_s; (void)row0;
#pragma unroll
  for (int j = 0; j < S_TILES; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < QK_KSTEPS; ++kk) {
{% if p.q_in_registers %}    const uint32_t (&a)[4] = qa.a[kk];
{% else %}    uint32_t a[4];
    cascade_q_frag(a, q_s, row0, lane, kk);
{% endif %}{% if p.ldmatrix %}    // Matrices 0-3: keys of tile j then j+1, head columns 0-7 then 8-15 of the step: b0, b1 of each.
    const int quarter = lane / 8;
#pragma unroll
    for (int j = 0; j < S_TILES; j += 2) {
      uint32_t b[4];
      cascade_ldsm_x4(b, kt + ((j + (quarter >> 1)) * 8 + lane % 8) * SMEM_LD + kk * 16 + (quarter & 1) * 8);
      cascade_mma(s[j], a, b[0], b[1]);
      cascade_mma(s[j + 1], a, b[2], b[3]);
    }
{% else %}    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int j = 0; j < S_TILES; ++j) {
      const elem_t* kb = kt + (j * 8 + g) * SMEM_LD + kk * 16 + 2 * t;
      cascade_mma(s[j], a, *reinterpret_cast<const uint32_t*>(kb), *reinterpret_cast<const uint32_t*>(kb + 8));
    }
{% endif %}  }
}

// o += P V with P from registers: two adjacent score tiles form one A fragment (FA2's reuse).
{{ d.device_fn }} void cascade_pv(float (&o)[O_TILES][4], const float (&s)[S_TILES][4], const elem_t* vt, float* p_s, int row0, int lane) {
  (void)p_s; (void)row0;
#pragma unroll
  for (int kk = 0; kk < PV_KSTEPS; ++kk) {
    const uint32_t a[4] = {cascade_pack2(s[2 * kk][0], s[2 * kk][1]), cascade_pack2(s[2 * kk][2], s[2 * kk][3]),
                           cascade_pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]), cascade_pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
{% if p.ldmatrix %}    // Transposed matrices 0-3: keys 0-7 then 8-15 of the step, head columns of tile dj then dj+1.
    const int quarter = lane / 8;
#pragma unroll
    for (int dj = 0; dj < O_TILES; dj += 2) {
      uint32_t b[4];
      cascade_ldsm_x4_trans(b, vt + (kk * 16 + (quarter & 1) * 8 + lane % 8) * SMEM_LD + (dj + (quarter >> 1)) * 8);
      cascade_mma(o[dj], a, b[0], b[1]);
      cascade_mma(o[dj + 1], a, b[2], b[3]);
    }
{% else %}    const unsigned short* vb = reinterpret_cast<const unsigned short*>(vt);
    const int g = lane / 4, key = kk * 16 + 2 * (lane % 4);
#pragma unroll
    for (int dj = 0; dj < O_TILES; ++dj) {
      const int col = dj * 8 + g;
      const uint32_t b0 = vb[key * SMEM_LD + col] | (uint32_t(vb[(key + 1) * SMEM_LD + col]) << 16);
      const uint32_t b1 = vb[(key + 8) * SMEM_LD + col] | (uint32_t(vb[(key + 9) * SMEM_LD + col]) << 16);
      cascade_mma(o[dj], a, b0, b1);
    }
{% endif %}  }
}
