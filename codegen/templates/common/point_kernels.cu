{% for k in p.kernels %}
// {{ k.comment }}
{{ d.kernel_qualifier }} void {{ k.name }}({{ d.ctx_param }}, long long it, long long n_points) {
  (void)it;
  {{ d.point_loop_open }}
{% for line in k.decode %}    {{ line }}
{% endfor %}{% for line in k.body %}    {{ line }}
{% endfor %}  {{ d.point_loop_close }}
}
{% endfor %}