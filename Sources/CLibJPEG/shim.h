#ifndef IMAGEGEN_CLIBJPEG_SHIM_H
#define IMAGEGEN_CLIBJPEG_SHIM_H
#include <stdio.h>
#include <stddef.h>
#include <jpeglib.h>
#endif
