#ifndef IMAGEGEN_CLCMS2_SHIM_H
#define IMAGEGEN_CLCMS2_SHIM_H
#include <lcms2.h>

// The pixel format constants are built with function-like macros, which Swift does not import.
static inline cmsUInt32Number ig_lcms_type_rgba_8(void) { return TYPE_RGBA_8; }
static inline cmsUInt32Number ig_lcms_type_rgb_8(void) { return TYPE_RGB_8; }
static inline cmsUInt32Number ig_lcms_type_gray_8(void) { return TYPE_GRAY_8; }
static inline cmsUInt32Number ig_lcms_type_cmyk_8(void) { return TYPE_CMYK_8; }
#endif
