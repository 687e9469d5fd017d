#ifndef IMAGEGEN_CHIREDIS_SHIM_H
#define IMAGEGEN_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
