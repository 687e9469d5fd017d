#include "imagegen_image_shim.h"
#include "ig_internal.h"

#include <string.h>

static const uint8_t ig_png_signature[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

/* CRC-32 (ISO 3309, as used by PNG), bitwise: only the 17 bytes of IHDR are checked. */
static uint32_t ig_crc32(const uint8_t *data, size_t length) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < length; i++) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
        }
    }
    return crc ^ 0xffffffffu;
}

/* Channels per pixel for a PNG colour type, or 0 when the type/depth pair is invalid. */
static uint8_t ig_png_components(uint8_t color_type, uint8_t depth) {
    switch (color_type) {
    case 0:
        return (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16) ? 1 : 0;
    case 2:
        return (depth == 8 || depth == 16) ? 3 : 0;
    case 3:
        return (depth == 1 || depth == 2 || depth == 4 || depth == 8) ? 3 : 0;
    case 4:
        return (depth == 8 || depth == 16) ? 2 : 0;
    case 6:
        return (depth == 8 || depth == 16) ? 4 : 0;
    default:
        return 0;
    }
}

int ig_png_probe(const uint8_t *data, size_t length, ig_probe *out) {
    if (out == NULL || data == NULL) {
        return IG_ERR_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof(*out));
    size_t signature_bytes = length < 8 ? length : 8;
    if (memcmp(data, ig_png_signature, signature_bytes) != 0) {
        return IG_ERR_CORRUPT;
    }
    /* Signature (8) + IHDR length, type, 13 data bytes and CRC (25). */
    if (length < 33) {
        return IG_ERR_TRUNCATED;
    }
    const uint8_t *ihdr = data + 8;
    if (ig_be32(ihdr) != 13 || memcmp(ihdr + 4, "IHDR", 4) != 0) {
        return IG_ERR_CORRUPT;
    }
    if (ig_crc32(ihdr + 4, 17) != ig_be32(ihdr + 21)) {
        return IG_ERR_CORRUPT;
    }
    uint32_t width = ig_be32(ihdr + 8);
    uint32_t height = ig_be32(ihdr + 12);
    uint8_t depth = ihdr[16];
    uint8_t color_type = ihdr[17];
    uint8_t compression = ihdr[18];
    uint8_t filter = ihdr[19];
    uint8_t interlace = ihdr[20];
    uint8_t components = ig_png_components(color_type, depth);
    if (components == 0 || compression != 0 || filter != 0 || interlace > 1) {
        return IG_ERR_CORRUPT;
    }
    out->width = width;
    out->height = height;
    out->bit_depth = depth;
    out->color_type = color_type;
    out->components = components;
    out->interlaced = interlace;
    if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) {
        return IG_ERR_BAD_DIMENSIONS;
    }

    /* Walk the chunks up to the first IDAT; an acTL before it makes the file an APNG. */
    size_t position = 33;
    while (length - position >= 8) {
        uint32_t chunk_length = ig_be32(data + position);
        const uint8_t *type = data + position + 4;
        if (chunk_length > 0x7fffffffu) {
            return IG_ERR_CORRUPT;
        }
        if (memcmp(type, "IDAT", 4) == 0) {
            break;
        }
        if (memcmp(type, "acTL", 4) == 0) {
            out->animated = 1;
            break;
        }
        uint64_t next = (uint64_t)position + 12u + chunk_length;
        if (next > (uint64_t)length) {
            break;
        }
        position = (size_t)next;
    }
    return IG_OK;
}

/* Whether a marker is a start-of-frame (SOF0..SOF15 except DHT, JPG and DAC). */
static int ig_jpeg_is_sof(uint8_t marker) {
    return marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
}

int ig_jpeg_probe(const uint8_t *data, size_t length, ig_probe *out) {
    if (out == NULL || data == NULL) {
        return IG_ERR_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof(*out));
    if (length < 2) {
        return length == 1 && data[0] != 0xff ? IG_ERR_CORRUPT : IG_ERR_TRUNCATED;
    }
    if (data[0] != 0xff || data[1] != 0xd8) {
        return IG_ERR_CORRUPT;
    }
    size_t position = 2;
    for (;;) {
        /* Skip anything up to the next 0xFF, then any fill bytes. */
        while (position < length && data[position] != 0xff) {
            position++;
        }
        while (position < length && data[position] == 0xff) {
            position++;
        }
        if (position >= length) {
            return IG_ERR_TRUNCATED;
        }
        uint8_t marker = data[position++];
        if (marker == 0x00 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
            continue; /* stuffed byte, TEM or RSTn: no segment */
        }
        if (marker == 0xd8 || marker == 0xd9 || marker == 0xda) {
            return IG_ERR_CORRUPT; /* SOI again, EOI or SOS before any frame header */
        }
        if (length - position < 2) {
            return IG_ERR_TRUNCATED;
        }
        uint32_t segment_length = ig_be16(data + position);
        if (segment_length < 2) {
            return IG_ERR_CORRUPT;
        }
        if (ig_jpeg_is_sof(marker)) {
            if (segment_length < 8) {
                return IG_ERR_CORRUPT;
            }
            if (length - position < 8) {
                return IG_ERR_TRUNCATED;
            }
            const uint8_t *frame = data + position + 2;
            out->bit_depth = frame[0];
            out->height = ig_be16(frame + 1);
            out->width = ig_be16(frame + 3);
            out->components = frame[5];
            out->sof_marker = marker;
            out->interlaced = (marker == 0xc2 || marker == 0xc6 || marker == 0xca || marker == 0xce) ? 1 : 0;
            if (out->components == 0 || segment_length < 8u + 3u * out->components) {
                return IG_ERR_CORRUPT;
            }
            if (out->width == 0 || out->height == 0) {
                return IG_ERR_BAD_DIMENSIONS;
            }
            return IG_OK;
        }
        if ((uint64_t)position + segment_length > (uint64_t)length) {
            return IG_ERR_TRUNCATED;
        }
        position += segment_length;
    }
}
