/*
 * See _darwin_stub.h. The part of libdispatch that
 * github.com/fsnotify/fsevents uses, as the SDK's dispatch/object.h and
 * dispatch/queue.h declare it for C (not Objective-C, where OS_OBJECT_USE_OBJC
 * is 0 and each object type is a pointer to its own struct).
 */
#ifndef _VRIFT_STUB_DISPATCH_H
#define _VRIFT_STUB_DISPATCH_H
#include "../_darwin_stub.h"
typedef struct dispatch_queue_s *dispatch_queue_t;
typedef struct dispatch_queue_attr_s *dispatch_queue_attr_t;
typedef union {
	struct _os_object_s *_os_obj;
	struct dispatch_object_s *_do;
	struct dispatch_queue_s *_dq;
	struct dispatch_queue_attr_s *_dqa;
} dispatch_object_t __attribute__((__transparent_union__));
dispatch_queue_t dispatch_queue_create(const char *label, dispatch_queue_attr_t attr);
void dispatch_release(dispatch_object_t object);
#endif
