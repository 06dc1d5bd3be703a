{% for line in header %}// {{ line }}
{% endfor %}
{{ d.includes }}

#define CASCADE_OK 0
#define CASCADE_ERR_SHAPE 1
#define CASCADE_ERR_DEVICE 2
#define CASCADE_ERR_ALLOC 3

