/* Stub of the few Mach declarations prometheus/client_golang's darwin
 * process collector uses (task_info, mach_vm_region), with macOS's LP64
 * sizes; see ../_darwin_stub.h for why a stub SDK. */
#ifndef _VRIFT_MACH_STUB_H
#define _VRIFT_MACH_STUB_H
typedef int kern_return_t;
typedef unsigned int natural_t;
typedef unsigned int mach_port_t;
typedef mach_port_t task_t;
typedef natural_t mach_msg_type_number_t;
typedef natural_t task_flavor_t;
typedef int *task_info_t;
typedef unsigned long long mach_vm_address_t;
typedef unsigned long long mach_vm_size_t;
typedef int vm_region_flavor_t;
typedef int *vm_region_info_t;
#define MACH_PORT_NULL ((mach_port_t)0)
#define KERN_SUCCESS 0
struct mach_task_basic_info {
	unsigned long long virtual_size;
	unsigned long long resident_size;
	unsigned long long resident_size_max;
	int user_time[2];
	int system_time[2];
	int policy;
	int suspend_count;
};
typedef struct mach_task_basic_info mach_task_basic_info_data_t;
#define MACH_TASK_BASIC_INFO 20
#define MACH_TASK_BASIC_INFO_COUNT ((mach_msg_type_number_t)(sizeof(mach_task_basic_info_data_t) / sizeof(natural_t)))
struct vm_region_basic_info_64 {
	int protection;
	int max_protection;
	unsigned int inheritance;
	unsigned int shared;
	unsigned int reserved;
	unsigned long long offset;
	int behavior;
	unsigned short user_wired_count;
};
typedef struct vm_region_basic_info_64 vm_region_basic_info_data_64_t;
#define VM_REGION_BASIC_INFO_64 9
#define VM_REGION_BASIC_INFO_COUNT_64 ((mach_msg_type_number_t)(sizeof(vm_region_basic_info_data_64_t) / sizeof(int)))
extern mach_port_t mach_task_self_;
#define mach_task_self() mach_task_self_
kern_return_t task_info(task_t, task_flavor_t, task_info_t, mach_msg_type_number_t *);
kern_return_t mach_vm_region(task_t, mach_vm_address_t *, mach_vm_size_t *, vm_region_flavor_t,
	vm_region_info_t, mach_msg_type_number_t *, mach_port_t *);
#endif
