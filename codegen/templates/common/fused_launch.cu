}  // namespace

extern "C" unsigned long long {{ p.launcher }}_workspace_bytes({{ p.size_params }}) {
  Args a{};
  if ({{ p.launcher }}_args(a, {{ p.null_args }}) != CASCADE_OK) return 0;
  return {{ p.launcher }}_ws_bytes(a);
}

// Launches the kernels on arguments already filled and checked.
static int {{ p.launcher }}_launch(Args& a, void* workspace, unsigned long long workspace_bytes, void* stream_ptr) {
  {{ d.stream_type }} stream = static_cast<{{ d.stream_type }}>(stream_ptr);
  if (a.batch == 0) return CASCADE_OK;
  // Rows are copied and stored 16 bytes at a time.
  if (!({{ p.aligned }})) return CASCADE_ERR_SHAPE;
  const unsigned long long need = {{ p.launcher }}_ws_bytes(a);
  if (need > 0) {
    if (workspace == nullptr) workspace = cascade_cached_workspace(need);
    else if (workspace_bytes < need) return CASCADE_ERR_ALLOC;
    if (workspace == nullptr) return CASCADE_ERR_ALLOC;
    a.ws = static_cast<float*>(workspace);
  }
  const long long q_tiles = (a.s_{{ p.query_rank }} + BLOCK_M - 1) / BLOCK_M;
  if (q_tiles * a.n_splits > 2147483647LL) return CASCADE_ERR_SHAPE;
  if ({{ set_smem }} != {{ d.success }}) return CASCADE_ERR_DEVICE;
  const dim3 grid(static_cast<unsigned>(q_tiles * a.n_splits), static_cast<unsigned>(a.n_heads < 65535 ? a.n_heads : 65535), static_cast<unsigned>(a.batch < 65535 ? a.batch : 65535));
  const dim3 block(THREADS);
  {{ launch }}
{% if p.split %}  const long long elements = a.batch * a.n_heads * a.s_{{ p.query_rank }} * {{ p.launch_f_size }};
  const dim3 combine_grid(static_cast<unsigned>((elements + 255) / 256 < 65535 ? (elements + 255) / 256 : 65535));
  const dim3 combine_block(256);
  {{ launch_combine }}
{% endif %}  return {{ d.get_last_error }} == {{ d.success }} ? CASCADE_OK : CASCADE_ERR_DEVICE;
}

extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
  Args a{};
  const int rc = {{ p.launcher }}_args(a, {{ p.core_args }});
  if (rc != CASCADE_OK) return rc;
  return {{ p.launcher }}_launch(a, workspace, workspace_bytes, stream_ptr);
}

// The same with the caller's strides in elements instead of the cascade's layout (a view's
// strides, say): {{ p.stride_doc }}.
extern "C" int {{ p.launcher }}_strided({{ p.strided_params }}) {
  Args a{};
  const int rc = {{ p.launcher }}_args(a, {{ p.core_args }});
  if (rc != CASCADE_OK) return rc;
{% for f in p.stride_fields %}  a.{{ f }} = strides[{{ loop.index0 }}];
{% endfor %}  return {{ p.launcher }}_launch(a, workspace, workspace_bytes, stream_ptr);
}
