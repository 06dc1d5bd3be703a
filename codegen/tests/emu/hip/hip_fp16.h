// Emulation shim for the codegen tests.
#include "../emu.h"
