/* See _darwin_stub.h. */
#include "_darwin_stub.h"
