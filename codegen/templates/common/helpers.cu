// exp(x - c) is 0 whenever x = -inf (also c = -inf), and 0/0 is 0: fully masked rows give zeros.
{{ d.device_fn }} float cascade_subexp(float x, float c) { return x == -INFINITY ? 0.0f : expf(x - c); }
{{ d.device_fn }} float cascade_div(float a, float b) { return (a == 0.0f && b == 0.0f) ? 0.0f : a / b; }
// The operator table's helpers (cascade_ir::ops::UNARY).
{% for h in p.op_helpers %}{{ d.device_fn }} {{ h }}
{% endfor %}{{ d.device_fn }} float cascade_f32_to_float(float x) { return x; }
{{ d.device_fn }} float cascade_float_to_f32(float x) { return x; }
{{ d.device_fn }} float to_f(elem_t x) { return {{ ty.to_float }}(x); }
{{ d.device_fn }} elem_t from_f(float x) { return {{ ty.from_float }}(x); }
