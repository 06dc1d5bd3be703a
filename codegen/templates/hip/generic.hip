{% include "cuda/generic.cu" %}
