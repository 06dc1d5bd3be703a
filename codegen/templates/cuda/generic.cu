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
}  // namespace

extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
  {{ d.stream_type }} stream = static_cast<{{ d.stream_type }}>(stream_ptr);
  Ctx c{};
  if (batch < 0) return CASCADE_ERR_SHAPE;
{% for line in p.size_setup %}  {{ line }}
{% endfor %}  int err = CASCADE_OK;
{% for b in p.buffers %}  if ({{ d.malloc }}(reinterpret_cast<void**>(&c.t_{{ b.name }}), sizeof(float) * ({{ b.elems }})) != {{ d.success }}) err = CASCADE_ERR_ALLOC;
  if ({{ d.malloc }}(reinterpret_cast<void**>(&c.p_{{ b.name }}), ({{ b.elems }})) != {{ d.success }}) err = CASCADE_ERR_ALLOC;
{% endfor %}  for (long long b = 0; b < batch && err == CASCADE_OK; ++b) {
{% for line in p.io_setup %}    {{ line }}
{% endfor %}{% for b in p.buffers %}    if ({{ d.memset }}(c.p_{{ b.name }}, 0, ({{ b.elems }}), stream) != {{ d.success }}) err = CASCADE_ERR_DEVICE;
{% endfor %}    long long it = 0;
{% for line in p.host_steps %}    {{ line }}
{% endfor %}    if ({{ d.get_last_error }} != {{ d.success }}) err = CASCADE_ERR_DEVICE;
  }
{% for b in p.buffers %}  (void){{ d.free }}(c.t_{{ b.name }});
  (void){{ d.free }}(c.p_{{ b.name }});
{% endfor %}  return err;
}
