/* The libvirt API the scheduler binds to; build.rs runs bindgen over this file. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
