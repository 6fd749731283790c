/* See _mach_stub.h. */
#include "_mach_stub.h"
