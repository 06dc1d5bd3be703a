// Scratch for a launch whose caller passes no workspace: allocated on first use and grown when a
// launch needs more, never freed while the library is loaded. Growing allocates (and frees the
// old buffer, which waits for the device), so a launch inside CUDA-graph capture must pass its
// own workspace of at least cascade_*_workspace_bytes(...) bytes.
[[maybe_unused]] static void* cascade_cached_workspace(unsigned long long bytes) {
  static void* cached = nullptr;
  static unsigned long long cached_bytes = 0;
  if (bytes > cached_bytes) {
    if (cached != nullptr) (void){{ d.free }}(cached);
    cached = nullptr;
    cached_bytes = 0;
    if ({{ d.malloc }}(&cached, bytes) != {{ d.success }}) return nullptr;
    cached_bytes = bytes;
  }
  return cached;
}
