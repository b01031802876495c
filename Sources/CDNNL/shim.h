// oneDNN C API (Debian libdnnl-dev 2.6).
#ifndef FRAMEPIPE_CDNNL_SHIM_H
#define FRAMEPIPE_CDNNL_SHIM_H
#include <dnnl.h>
#endif
