#ifndef IMAGEGEN_IMAGE_SHIM_INTERNAL_H
#define IMAGEGEN_IMAGE_SHIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Writes a formatted, NUL-terminated message into errbuf (if any) and returns `code`. */
int ig_fail(int code, char *errbuf, size_t errlen, const char *format, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Reads a big-endian 32-bit integer. */
static inline uint32_t ig_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Reads a big-endian 16-bit integer. */
static inline uint32_t ig_be16(const uint8_t *p) {
    return ((uint32_t)p[0] << 8) | (uint32_t)p[1];
}

#endif /* IMAGEGEN_IMAGE_SHIM_INTERNAL_H */
