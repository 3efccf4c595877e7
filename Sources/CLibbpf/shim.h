#ifndef TINCTURE_CLIBBPF_SHIM_H
#define TINCTURE_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#endif
