{% for line in header %}// {{ line }}
{% endfor %}
{{ d.includes }}

#define CASCADE_OK 0
#define CASCADE_ERR_SHAPE 1
#define CASCADE_ERR_DEVICE 2
#define CASCADE_ERR_ALLOC 3

// gcd(parent, 64): the inner size of a split whose launcher argument is 0, as the interpreter
// chooses it when only the parent's size is given.
[[maybe_unused]] static long long cascade_gcd(long long a, long long b) { while (b != 0) { const long long t = a % b; a = b; b = t; } return a; }

