{% include "cuda/fused.cu" %}
