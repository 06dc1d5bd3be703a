// Fills the kernel's arguments from the launcher's, strides from the cascade's layout, and
// checks the shape (CASCADE_ERR_SHAPE where the interpreter or the kernel would refuse it).
[[maybe_unused]] static int {{ p.launcher }}_args(Args& a, {{ p.core_params }}) {
{% for line in p.size_setup %}  {{ line }}
{% endfor %}  if ({{ p.shape_check }}) return CASCADE_ERR_SHAPE;
{% for line in p.args_setup %}  {{ line }}
{% endfor %}  a.n_splits = 1;
  a.keys_per_split = a.s_{{ p.key_rank }};
{% if p.split %}  // Split the keys so that about TARGET_BLOCKS blocks run, each split at least one key tile.
  const long long q_tiles = (a.s_{{ p.query_rank }} + BLOCK_M - 1) / BLOCK_M;
  const long long key_tiles = (a.s_{{ p.key_rank }} + BLOCK_N - 1) / BLOCK_N;
  const long long blocks = q_tiles * a.n_heads * (a.batch > 0 ? a.batch : 1);
  long long splits = (TARGET_BLOCKS + blocks - 1) / blocks;
  if (splits > key_tiles) splits = key_tiles;
  if (splits < 1) splits = 1;
  a.keys_per_split = (key_tiles + splits - 1) / splits * BLOCK_N;
  a.n_splits = (a.s_{{ p.key_rank }} + a.keys_per_split - 1) / a.keys_per_split;
{% endif %}  return CASCADE_OK;
}

// Workspace bytes a launch needs: the splits' partial numerators, maxima and denominators.
[[maybe_unused]] static unsigned long long {{ p.launcher }}_ws_bytes(const Args& a) {
{% if p.split %}  return 4ull * static_cast<unsigned long long>(a.batch * a.n_heads * a.n_splits * a.s_{{ p.query_rank }}) * (HEAD_DIM + 2);
{% else %}  (void)a;
  return 0;
{% endif %}}

