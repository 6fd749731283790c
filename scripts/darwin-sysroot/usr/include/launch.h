/* See _darwin_stub.h: the one launchd function vrift-daemon calls. */
#include "_darwin_stub.h"
int launch_activate_socket(const char *name, int **fds, size_t *cnt);
