/*
 * See usr/include/_darwin_stub.h: a stub of the macOS SDK, never linked.
 * Of CoreServices' umbrella header, only the FSEvents sub-framework, which
 * github.com/fsnotify/fsevents uses (watch/source_darwin.go).
 */
#ifndef _VRIFT_STUB_CORESERVICES_H
#define _VRIFT_STUB_CORESERVICES_H
#include <CoreFoundation/CoreFoundation.h>
#include <FSEvents/FSEvents.h>
#endif
