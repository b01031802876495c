// libhdf5 C API (Debian libhdf5-dev, serial flavour).
#ifndef FRAMEPIPE_CHDF5_SHIM_H
#define FRAMEPIPE_CHDF5_SHIM_H
#include <hdf5.h>
#endif
