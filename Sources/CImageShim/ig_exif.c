#include "imagegen_image_shim.h"
#include "ig_internal.h"

#include <string.h>

/* Reads a 16- or 32-bit TIFF integer in the structure's byte order. */
static uint32_t ig_tiff16(const uint8_t *p, int little) {
    return little ? ((uint32_t)p[0] | ((uint32_t)p[1] << 8)) : ig_be16(p);
}

static uint32_t ig_tiff32(const uint8_t *p, int little) {
    return little ? ((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24))
                  : ig_be32(p);
}

int ig_exif_orientation(const uint8_t *data, size_t length) {
    if (data == NULL) {
        return 1;
    }
    if (length >= 6 && memcmp(data, "Exif\0\0", 6) == 0) {
        data += 6;
        length -= 6;
    }
    if (length < 8) {
        return 1;
    }
    int little;
    if (data[0] == 'I' && data[1] == 'I') {
        little = 1;
    } else if (data[0] == 'M' && data[1] == 'M') {
        little = 0;
    } else {
        return 1;
    }
    if (ig_tiff16(data + 2, little) != 42) {
        return 1;
    }
    /* Every bound is checked against `length` with subtractions, so no sum can overflow. */
    size_t ifd = ig_tiff32(data + 4, little);
    if (ifd < 8 || ifd > length || length - ifd < 2) {
        return 1;
    }
    size_t count = ig_tiff16(data + ifd, little);
    size_t entries = ifd + 2;
    if ((length - entries) / 12 < count) {
        count = (length - entries) / 12; /* a directory cut short: read the entries that are there */
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *entry = data + entries + i * 12;
        if (ig_tiff16(entry, little) != 0x0112) {
            continue;
        }
        uint32_t type = ig_tiff16(entry + 2, little);
        uint32_t components = ig_tiff32(entry + 4, little);
        if ((type != 3 && type != 4) || components < 1) {
            return 1; /* SHORT as the spec says, or LONG as a few tools write it */
        }
        uint32_t value = type == 3 ? ig_tiff16(entry + 8, little) : ig_tiff32(entry + 8, little);
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}
