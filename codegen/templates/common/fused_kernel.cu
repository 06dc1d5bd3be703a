// Three-valued logic over tile states (TILE_SKIP < TILE_PARTIAL < TILE_FULL): and is the
// minimum, or the maximum.
{{ d.device_fn }} int cascade_kmin(int x, int y) { return x < y ? x : y; }
{{ d.device_fn }} int cascade_kmax(int x, int y) { return x > y ? x : y; }

// Key tile [k_lo, k_hi] against queries [p_lo, p_hi]: each atom of the scores' presence holds
// nowhere (TILE_SKIP), everywhere (TILE_FULL) or maybe (TILE_PARTIAL) there. The tile is skipped
// where the presence holds nowhere, and takes the fast path where every atom holds everywhere
// and no key is past the end.
{{ d.device_fn }} int cascade_classify(int (&st)[N_ATOMS], long long k_lo, long long k_hi, long long p_lo, long long p_hi, long long k_end, const Args& a{{ p.head_params }}) {
  (void)k_lo; (void)k_hi; (void)p_lo; (void)p_hi; (void)k_end; (void)a; st[0] = TILE_FULL;
{% for line in p.classify %}  {{ line }}
{% endfor %}}

{{ d.device_fn }} long long cascade_next_live_tile(long long from, long long n_tiles, long long k_begin, long long p_lo, long long p_hi, long long k_end, const Args& a{{ p.head_params }}) {
  int st[N_ATOMS];
  while (from < n_tiles && cascade_classify(st, k_begin + from * BLOCK_N, k_begin + from * BLOCK_N + BLOCK_N - 1, p_lo, p_hi, k_end, a{{ p.head_args }}) == CLASS_SKIP) ++from;
  return from;
}

// Copies `rows` rows from `first` on (`stride` elements apart) into shared memory, 16 bytes at
// a time; rows at or past `end` and chunks past `chunks` are zero-filled.
{{ d.device_fn }} void cascade_load_rows(elem_t* dst, const elem_t* src, long long stride, long long first, long long end, int rows, long long chunks, int tid) {
  for (int i = tid; i < rows * CHUNKS_PER_ROW; i += THREADS) {
    const int r = i / CHUNKS_PER_ROW, ch = i % CHUNKS_PER_ROW;
    const long long row = first + r;
    const bool ok = row < end && ch < chunks;
    {{ d.async_copy_16 }}(dst + r * SMEM_LD + ch * ELEMS_PER_CHUNK, src + (ok ? row * stride + ch * ELEMS_PER_CHUNK : 0), ok);
  }
}

// Writes the staged output tile: rows from `first` on, before `end`, chunks before `chunks`,
// one 128-bit store per 16 bytes.
{{ d.device_fn }} void cascade_store_rows(elem_t* dst, long long stride, const elem_t* src, long long first, long long end, long long chunks, int tid) {
  for (int i = tid; i < BLOCK_M * CHUNKS_PER_ROW; i += THREADS) {
    const int r = i / CHUNKS_PER_ROW, ch = i % CHUNKS_PER_ROW;
    const long long row = first + r;
    if (row < end && ch < chunks)
      *reinterpret_cast<uint4*>(dst + row * stride + ch * ELEMS_PER_CHUNK) = *reinterpret_cast<const uint4*>(src + r * SMEM_LD + ch * ELEMS_PER_CHUNK);
  }
}

// One query tile of BLOCK_M rows and one range of keys per block: blockIdx.x is the query tile
// and the split of the keys, blockIdx.y the head, blockIdx.z the batch entry (heads and batch
// entries past the grid's 65,535 are looped over). Each warp owns ROWS_PER_WARP rows.
{{ d.kernel_qualifier }} void __launch_bounds__(THREADS, {{ p.min_blocks_per_sm }}) {{ p.kernel }}(const Args a) {
  extern __shared__ __align__(16) unsigned char cascade_smem[];
  elem_t* q_s = reinterpret_cast<elem_t*>(cascade_smem);
  elem_t* k_s = q_s + Q_SMEM;
  elem_t* v_s = k_s + STAGES * KV_STAGE;
  float* p_s = reinterpret_cast<float*>(v_s + STAGES * KV_STAGE);
  (void)p_s;
  const int tid = threadIdx.x, warp = tid / WARP_SIZE, lane = tid % WARP_SIZE;
  const int row0 = warp * ROWS_PER_WARP;
  const long long n_queries = {{ p.n_queries }}, n_keys = {{ p.n_keys }};
  const long long e_chunks = {{ p.e_size }} / ELEMS_PER_CHUNK, f_chunks = {{ p.f_size }} / ELEMS_PER_CHUNK;
  const long long q_tiles = (n_queries + BLOCK_M - 1) / BLOCK_M;
  const long long split = static_cast<long long>(blockIdx.x) % a.n_splits;
  // Last query tile first: under a causal mask later tiles see more keys, so the longest
  // blocks start first and the short ones fill the tail.
  const long long p0 = (q_tiles - 1 - static_cast<long long>(blockIdx.x) / a.n_splits) * BLOCK_M;
  const long long p_lo = p0, p_hi = (p0 + BLOCK_M < n_queries ? p0 + BLOCK_M : n_queries) - 1;
  const long long k_begin = split * a.keys_per_split;
  const long long k_end = k_begin + a.keys_per_split < n_keys ? k_begin + a.keys_per_split : n_keys;
  const long long n_tiles = k_end > k_begin ? (k_end - k_begin + BLOCK_N - 1) / BLOCK_N : 0;
  for (long long bz = blockIdx.z; bz < a.batch; bz += gridDim.z) {
    for (long long h = blockIdx.y; h < a.n_heads; h += gridDim.y) {
{% for line in p.head_decode %}      {{ line }}
{% endfor %}      const elem_t* q = {{ p.q_rows.base }};
      const elem_t* k = {{ p.k_rows.base }};
      const elem_t* v = {{ p.v_rows.base }};
      const long long q_seq = {{ p.q_rows.seq }}, k_seq = {{ p.k_rows.seq }}, v_seq = {{ p.v_rows.seq }};
      cascade_load_rows(q_s, q, q_seq, p0, n_queries, BLOCK_M, e_chunks, tid);
      {{ d.async_commit }};
      long long cur = cascade_next_live_tile(0, n_tiles, k_begin, p_lo, p_hi, k_end, a{{ p.head_args }});
      if (cur < n_tiles) {
        cascade_load_rows(k_s, k, k_seq, k_begin + cur * BLOCK_N, k_end, BLOCK_N, e_chunks, tid);
        cascade_load_rows(v_s, v, v_seq, k_begin + cur * BLOCK_N, k_end, BLOCK_N, f_chunks, tid);
      }
      {{ d.async_commit }};
      {{ d.async_wait_prev }};
      __syncthreads();
      QFrags qa;
      cascade_load_q(qa, q_s, row0, lane);
      // Per-row values of the scores (row inputs, the folded scale), once per row slot.
      float rowv[ROW_SLOTS][N_ROWV];
      (void)rowv;
#pragma unroll
      for (int r = 0; r < ROW_SLOTS; ++r) {
        const long long row_p = p0 + row0 + frag_slot_row(lane, r);
        const bool row_ok = row_p < n_queries;
        (void)row_p; (void)row_ok; rowv[r][0] = 0.0f;
{% for line in p.row_setup %}        {{ line }}
{% endfor %}      }
      float o[O_TILES][4];
#pragma unroll
      for (int dj = 0; dj < O_TILES; ++dj) o[dj][0] = o[dj][1] = o[dj][2] = o[dj][3] = 0.0f;
      float rm[ROW_SLOTS], rd[ROW_SLOTS];  // running max (base 2) and this lane's partial denominator
#pragma unroll
      for (int r = 0; r < ROW_SLOTS; ++r) { rm[r] = -INFINITY; rd[r] = 0.0f; }
      int stage = 0;
      while (cur < n_tiles) {
        const long long nxt = cascade_next_live_tile(cur + 1, n_tiles, k_begin, p_lo, p_hi, k_end, a{{ p.head_args }});
        if (nxt < n_tiles) {
          cascade_load_rows(k_s + (stage ^ 1) * KV_STAGE, k, k_seq, k_begin + nxt * BLOCK_N, k_end, BLOCK_N, e_chunks, tid);
          cascade_load_rows(v_s + (stage ^ 1) * KV_STAGE, v, v_seq, k_begin + nxt * BLOCK_N, k_end, BLOCK_N, f_chunks, tid);
        }
        {{ d.async_commit }};
        {{ d.async_wait_prev }};
        __syncthreads();
        const elem_t* kt = k_s + stage * KV_STAGE;
        const elem_t* vt = v_s + stage * KV_STAGE;
        const long long k_tile0 = k_begin + cur * BLOCK_N;
        int st[N_ATOMS];
        const int cls = cascade_classify(st, k_tile0, k_tile0 + BLOCK_N - 1, p_lo, p_hi, k_end, a{{ p.head_args }});
        float s[S_TILES][4];
        // The scores, then the online update and P·V (the header lists the Einsums of each step).
        cascade_scores(s, qa, q_s, kt, row0, lane);
        if (cls == CLASS_FAST) {
#pragma unroll
          for (int j = 0; j < S_TILES; ++j) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int r = frag_slot(i);
              const long long key = k_tile0 + frag_s_col(lane, j, i), row_p = p0 + row0 + frag_row(lane, i);
              const float qk = s[j][i];
              float sv;
              (void)r; (void)key; (void)row_p;
{% for line in p.score_fast %}              {{ line }}
{% endfor %}              s[j][i] = sv;
            }
          }
        } else {
#pragma unroll
          for (int j = 0; j < S_TILES; ++j) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int r = frag_slot(i);
              const long long key = k_tile0 + frag_s_col(lane, j, i), row_p = p0 + row0 + frag_row(lane, i);
              const float qk = s[j][i];
              float sv;
              (void)r; (void)key; (void)row_p;
{% for line in p.score_general %}              {{ line }}
{% endfor %}              s[j][i] = sv;
            }
          }
        }
#pragma unroll
        for (int r = 0; r < ROW_SLOTS; ++r) {
{% if p.softmax %}          // Online softmax in base 2: the new max, the rescale of what came before, the weights.
          float lm = -INFINITY;
#pragma unroll
          for (int j = 0; j < S_TILES; ++j)
#pragma unroll
            for (int i = 0; i < 4; ++i)
              if (frag_slot(i) == r) lm = fmaxf(lm, s[j][i]);
          lm = frag_row_max(lm);
          const float rm_new = fmaxf(rm[r], lm);
          // A row with no present score yet keeps -inf: exponentiate against 0 so -inf gives 0.
          const float m_use = rm_new == -INFINITY ? 0.0f : rm_new;
          const float prm = cascade_exp2(rm[r] - m_use);
          float sld = 0.0f;
#pragma unroll
          for (int j = 0; j < S_TILES; ++j)
#pragma unroll
            for (int i = 0; i < 4; ++i)
              if (frag_slot(i) == r) {
                const float w = cascade_exp2(s[j][i] - m_use);
                s[j][i] = w;
                sld += w;
              }
          rd[r] = rd[r] * prm + sld;
#pragma unroll
          for (int dj = 0; dj < O_TILES; ++dj)
#pragma unroll
            for (int i = 0; i < 4; ++i)
              if (frag_slot(i) == r) o[dj][i] *= prm;
          rm[r] = rm_new;
{% else %}          // The scores are the weights: only their sum is kept.
          float sld = 0.0f;
#pragma unroll
          for (int j = 0; j < S_TILES; ++j)
#pragma unroll
            for (int i = 0; i < 4; ++i)
              if (frag_slot(i) == r) sld += s[j][i];
          rd[r] += sld;
{% endif %}        }
        cascade_pv(o, s, vt, p_s, row0, lane);
        __syncthreads();
        cur = nxt;
        stage ^= 1;
      }
#pragma unroll
      for (int r = 0; r < ROW_SLOTS; ++r) rd[r] = frag_row_sum(rd[r]);
{% if p.split %}      // This split's partial results for the combine kernel: the unnormalised numerator, the
      // running max (base 2) and the denominator of every row.
      const long long part = ((bz * a.n_heads + h) * a.n_splits + split) * n_queries;
      const long long n_parts = a.batch * a.n_heads * a.n_splits * n_queries;
      float* ws_rows = a.ws + (part + p0 + row0) * HEAD_DIM;
      const int rows_left = static_cast<int>(n_queries - p0 - row0 < ROWS_PER_WARP ? n_queries - p0 - row0 : ROWS_PER_WARP);
      const int n_f = static_cast<int>({{ p.f_size }});
#pragma unroll
      for (int dj = 0; dj < O_TILES; ++dj)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int row = frag_row(lane, i), col = frag_o_col(lane, dj, i);
          if (row < rows_left && col < n_f) ws_rows[row * HEAD_DIM + col] = o[dj][i];
        }
#pragma unroll
      for (int r = 0; r < ROW_SLOTS; ++r) {
        const long long row_p = p0 + row0 + frag_slot_row(lane, r);
        if (row_p < n_queries && frag_row_leader(lane)) {
          a.ws[n_parts * HEAD_DIM + part + row_p] = rm[r];
          a.ws[n_parts * (HEAD_DIM + 1) + part + row_p] = rd[r];
        }
      }
{% else %}      // Per-row values of the outputs, and the per-row outputs themselves.
      float rowe[ROW_SLOTS][N_ROWE];
#pragma unroll
      for (int r = 0; r < ROW_SLOTS; ++r) {
        const long long row_p = p0 + row0 + frag_slot_row(lane, r);
        const bool row_ok = row_p < n_queries;
        const float rd_fin = rd[r], rm_fin = rm[r] * LN2;
        (void)row_ok; (void)rd_fin; (void)rm_fin; rowe[r][0] = 0.0f;
{% for line in p.epilogue_row %}        {{ line }}
{% endfor %}{% for line in p.row_stores %}        {{ line }}
{% endfor %}      }
{% for out in p.elem_outputs %}      {
        // {{ out.name }}: staged in shared memory (the Q tile's), then stored 16 bytes at a time.
        elem_t* o_s = q_s;
        __syncthreads();
#pragma unroll
        for (int dj = 0; dj < O_TILES; ++dj)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int r = frag_slot(i);
            const long long row_p = p0 + row0 + frag_row(lane, i), col_f = frag_o_col(lane, dj, i);
            const float o_fin = o[dj][i], rd_fin = rd[r], rm_fin = rm[r] * LN2;
            (void)row_p; (void)col_f; (void)rd_fin; (void)rm_fin;
            {{ out.value }}
            o_s[(row0 + frag_row(lane, i)) * SMEM_LD + col_f] = from_f(ov);
          }
        __syncthreads();
        elem_t* dst = {{ out.rows.base }};
        cascade_store_rows(dst, {{ out.rows.seq }}, o_s, p0, n_queries, f_chunks, tid);
      }
{% endfor %}{% endif %}      __syncthreads();
    }
  }
}
{% if p.split %}
// Combines the splits' partial results: per output element, the global max over the splits,
// each split weighed by exp2(its max - the global max), numerator over denominator.
{{ d.kernel_qualifier }} void {{ p.combine_kernel }}(const Args a) {
  const long long n_queries = {{ p.n_queries }}, n_f = {{ p.f_size }};
  const long long n_parts = a.batch * a.n_heads * a.n_splits * n_queries;
  const long long total = a.batch * a.n_heads * n_queries * n_f;
  for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long col_f = idx % n_f, row_p = (idx / n_f) % n_queries;
    const long long h = (idx / n_f / n_queries) % a.n_heads, bz = idx / n_f / n_queries / a.n_heads;
{% for line in p.head_decode %}    {{ line }}
{% endfor %}    const long long part0 = (bz * a.n_heads + h) * a.n_splits * n_queries + row_p;
    float mx = -INFINITY;
    for (long long sp = 0; sp < a.n_splits; ++sp) mx = fmaxf(mx, a.ws[n_parts * HEAD_DIM + part0 + sp * n_queries]);
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
{% for line in p.epilogue_row %}    {{ line }}
{% endfor %}{% for out in p.elem_outputs %}    {
      {{ out.value }}
      elem_t* dst = {{ out.rows.base }};
      dst[row_p * {{ out.rows.seq }} + col_f] = from_f(ov);
    }
{% endfor %}  }
}
{% endif %}
