#include "imagegen_image_shim.h"
#include "ig_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void ig_free(void *pointer) {
    free(pointer);
}

int ig_fail(int code, char *errbuf, size_t errlen, const char *format, ...) {
    if (errbuf != NULL && errlen > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(errbuf, errlen, format, args);
        va_end(args);
    }
    return code;
}
