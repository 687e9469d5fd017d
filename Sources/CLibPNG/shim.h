#ifndef IMAGEGEN_CLIBPNG_SHIM_H
#define IMAGEGEN_CLIBPNG_SHIM_H
#include <png.h>
#endif
