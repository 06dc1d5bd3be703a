{% include "common/prelude.cu" %}
namespace {

typedef float elem_t;

{% include "common/helpers.cu" %}

// Every rank size, the batch entry's inputs and outputs, and each computed tensor as values
// plus a presence byte per point (first rank fastest).
struct Ctx {
{% for f in p.ctx_fields %}  {{ f }}
{% endfor %}};
{% include "common/point_kernels.cu" %}
}  // namespace

extern "C" int {{ p.launcher }}({{ p.abi_params }}) {
  Ctx c{};
  if (batch < 0) return CASCADE_ERR_SHAPE;
{% for line in p.size_setup %}  {{ line }}
{% endfor %}{% for b in p.buffers %}  std::vector<float> t_{{ b.name }}(static_cast<size_t>({{ b.elems }}));
  std::vector<unsigned char> p_{{ b.name }}(static_cast<size_t>({{ b.elems }}));
  c.t_{{ b.name }} = t_{{ b.name }}.data();
  c.p_{{ b.name }} = p_{{ b.name }}.data();
{% endfor %}  for (long long b = 0; b < batch; ++b) {
{% for line in p.io_setup %}    {{ line }}
{% endfor %}{% for b in p.buffers %}    std::fill(p_{{ b.name }}.begin(), p_{{ b.name }}.end(), static_cast<unsigned char>(0));
{% endfor %}    long long it = 0;
{% for line in p.host_steps %}    {{ line }}
{% endfor %}  }
  return CASCADE_OK;
}
