{% include "common/prelude.cu" %}
namespace {

typedef {{ ty.elem }} elem_t;

{% include "common/helpers.cu" %}

// Every rank size, the batch entry's inputs and outputs, and each computed tensor as values
// plus a presence byte per point (first rank fastest).
struct Ctx {
{% for f in p.ctx_fields %}  {{ f }}
{% endfor %}};
{% include "common/point_kernels.cu" %}
{% include "common/workspace.cu" %}

// Every rank size from the launcher's arguments; CASCADE_ERR_SHAPE where the interpreter
// would refuse the shape.
[[maybe_unused]] static int {{ p.launcher }}_sizes(Ctx& c, {{ p.size_params }}) {
  if (batch < 0) return CASCADE_ERR_SHAPE;
{% for line in p.size_setup %}  {{ line }}
{% endfor %}  return CASCADE_OK;
}

// Bytes every intermediate tensor's values and presence need, each region 256-byte aligned.
[[maybe_unused]] static unsigned long long {{ p.launcher }}_ws_bytes(const Ctx& c) {
  unsigned long long bytes = 0;
  (void)c;
{% for b in p.buffers %}  bytes += (sizeof(float) * static_cast<unsigned long long>({{ b.elems }}) + 255) / 256 * 256;
  bytes += (static_cast<unsigned long long>({{ b.elems }}) + 255) / 256 * 256;
{% endfor %}  return bytes;
}
}  // namespace

extern "C" unsigned long long {{ p.launcher }}_workspace_bytes({{ p.size_params }}) {
  Ctx c{};
  if ({{ p.launcher }}_sizes(c, {{ p.size_args }}) != CASCADE_OK) return 0;
  return {{ p.launcher }}_ws_bytes(c);
}

// Stream-ordered and allocation-free when the caller passes a workspace of at least
// {{ p.launcher }}_workspace_bytes(...) bytes (so it can be captured in a CUDA graph);
// without one the launcher uses a buffer it allocates once and grows when needed.
extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
  {{ d.stream_type }} stream = static_cast<{{ d.stream_type }}>(stream_ptr);
  Ctx c{};
  const int rc = {{ p.launcher }}_sizes(c, {{ p.size_args }});
  if (rc != CASCADE_OK) return rc;
  const unsigned long long need = {{ p.launcher }}_ws_bytes(c);
  if (workspace == nullptr) workspace = need > 0 ? cascade_cached_workspace(need) : nullptr;
  else if (workspace_bytes < need) return CASCADE_ERR_ALLOC;
  if (need > 0 && workspace == nullptr) return CASCADE_ERR_ALLOC;
  unsigned char* w = static_cast<unsigned char*>(workspace);
  unsigned long long at = 0;
  (void)w; (void)at;
{% for b in p.buffers %}  c.t_{{ b.name }} = reinterpret_cast<float*>(w + at);
  at += (sizeof(float) * static_cast<unsigned long long>({{ b.elems }}) + 255) / 256 * 256;
  c.p_{{ b.name }} = w + at;
  at += (static_cast<unsigned long long>({{ b.elems }}) + 255) / 256 * 256;
{% endfor %}  int err = CASCADE_OK;
  for (long long b = 0; b < batch && err == CASCADE_OK; ++b) {
{% for line in p.io_setup %}    {{ line }}
{% endfor %}{% for b in p.buffers %}    if ({{ d.memset }}(c.p_{{ b.name }}, 0, ({{ b.elems }}), stream) != {{ d.success }}) err = CASCADE_ERR_DEVICE;
{% endfor %}    long long it = 0;
{% for line in p.host_steps %}    {{ line }}
{% endfor %}    if ({{ d.get_last_error }} != {{ d.success }}) err = CASCADE_ERR_DEVICE;
  }
  return err;
}
