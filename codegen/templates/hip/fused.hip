{% include "common/prelude.cu" %}
namespace {

typedef {{ ty.elem }} elem_t;

{% include "common/fused_head.cu" %}
{% if p.mfma %}{% include "hip/mfma.hip" %}{% else %}{% include "common/simt.cu" %}{% endif %}
{% include "common/fused_kernel.cu" %}
{% include "common/workspace.cu" %}
{% include "common/fused_args.cu" %}
{% include "common/fused_launch.cu" %}
