// libhdf5 C API (Debian libhdf5-dev, serial flavour).
// HDF5 spells its predefined types and flags as macros that call H5open() (e.g. H5T_NATIVE_FLOAT is
// `(H5OPEN H5T_NATIVE_FLOAT_g)`); Swift cannot import such macros, so these inline functions return them.
#ifndef FRAMEPIPE_CHDF5_SHIM_H
#define FRAMEPIPE_CHDF5_SHIM_H
#include <hdf5.h>

static inline hid_t fp_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t fp_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t fp_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t fp_h5s_all(void) { return H5S_ALL; }
static inline hid_t fp_h5e_default(void) { return H5E_DEFAULT; }
static inline unsigned fp_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline size_t fp_h5t_variable(void) { return H5T_VARIABLE; }

/// Turns off HDF5's automatic printing of error stacks to stderr (errors are reported as Swift errors).
static inline herr_t fp_h5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
