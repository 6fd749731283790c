/*
 * See usr/include/_darwin_stub.h: a stub of the macOS SDK, never linked.
 * This is the part of CoreFoundation that github.com/fsnotify/fsevents
 * uses (watch/source_darwin.go), declared as in the SDK's headers
 * CoreFoundation/CFBase.h, CFArray.h, CFString.h, CFUUID.h and CFDate.h,
 * and MacTypes.h for the basic types. The *GetTypeID functions are there
 * because cgo treats a CF...Ref as a pointer-sized integer only when its
 * GetTypeID exists, as in the real headers.
 */
#ifndef _VRIFT_STUB_COREFOUNDATION_H
#define _VRIFT_STUB_COREFOUNDATION_H
#include <_darwin_stub.h>
#include <stdbool.h>

/* MacTypes.h */
typedef unsigned char UInt8;
typedef unsigned int UInt32;
typedef unsigned long long UInt64;
typedef unsigned char Boolean;

/* CFBase.h */
typedef unsigned long CFTypeID;
typedef signed long CFIndex;
typedef const void *CFTypeRef;
typedef const struct __CFString *CFStringRef;
typedef const struct __CFAllocator *CFAllocatorRef;
typedef struct { CFIndex location; CFIndex length; } CFRange;
typedef const void *(*CFAllocatorRetainCallBack)(const void *info);
typedef void (*CFAllocatorReleaseCallBack)(const void *info);
typedef CFStringRef (*CFAllocatorCopyDescriptionCallBack)(const void *info);
extern const CFAllocatorRef kCFAllocatorDefault;
CFTypeID CFAllocatorGetTypeID(void);
void CFRelease(CFTypeRef cf);

/* CFDate.h */
typedef double CFTimeInterval;
typedef CFTimeInterval CFAbsoluteTime;

/* CFArray.h */
typedef const void *(*CFArrayRetainCallBack)(CFAllocatorRef allocator, const void *value);
typedef void (*CFArrayReleaseCallBack)(CFAllocatorRef allocator, const void *value);
typedef CFStringRef (*CFArrayCopyDescriptionCallBack)(const void *value);
typedef Boolean (*CFArrayEqualCallBack)(const void *value1, const void *value2);
typedef struct {
	CFIndex version;
	CFArrayRetainCallBack retain;
	CFArrayReleaseCallBack release;
	CFArrayCopyDescriptionCallBack copyDescription;
	CFArrayEqualCallBack equal;
} CFArrayCallBacks;
extern const CFArrayCallBacks kCFTypeArrayCallBacks;
typedef const struct __CFArray *CFArrayRef;
typedef struct __CFArray *CFMutableArrayRef;
CFTypeID CFArrayGetTypeID(void);
CFMutableArrayRef CFArrayCreateMutable(CFAllocatorRef allocator, CFIndex capacity, const CFArrayCallBacks *callBacks);
CFIndex CFArrayGetCount(CFArrayRef theArray);
const void *CFArrayGetValueAtIndex(CFArrayRef theArray, CFIndex idx);
void CFArrayAppendValue(CFMutableArrayRef theArray, const void *value);

/* CFString.h */
typedef UInt32 CFStringEncoding;
enum { kCFStringEncodingUTF8 = 0x08000100 }; /* CFStringBuiltInEncodings */
CFTypeID CFStringGetTypeID(void);
CFStringRef CFStringCreateWithCString(CFAllocatorRef alloc, const char *cStr, CFStringEncoding encoding);
CFStringRef CFStringCreateCopy(CFAllocatorRef alloc, CFStringRef theString);
CFIndex CFStringGetLength(CFStringRef theString);
CFIndex CFStringGetBytes(CFStringRef theString, CFRange range, CFStringEncoding encoding, UInt8 lossByte,
	Boolean isExternalRepresentation, UInt8 *buffer, CFIndex maxBufLen, CFIndex *usedBufLen);

/* CFUUID.h */
typedef const struct __CFUUID *CFUUIDRef;
CFTypeID CFUUIDGetTypeID(void);
CFStringRef CFUUIDCreateString(CFAllocatorRef alloc, CFUUIDRef uuid);
#endif
