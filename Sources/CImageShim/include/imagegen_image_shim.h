#ifndef IMAGEGEN_IMAGE_SHIM_H
#define IMAGEGEN_IMAGE_SHIM_H

/*
 * Small C entry points around libpng and libjpeg.
 *
 * Every function here is self-contained: it never prints, never exits, never longjmps across the
 * boundary and reports failures as an IG_ERR_* code plus a NUL-terminated message in the caller's
 * `errbuf` (which may be NULL when `errlen` is 0). Buffers handed out are allocated with malloc and
 * must be released with ig_free.
 *
 * All functions are reentrant and may run concurrently on different threads.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. 0 is success. */
typedef enum ig_error_code {
    IG_OK = 0,
    /* The data is not a valid image of the expected format. */
    IG_ERR_CORRUPT = 1,
    /* The data ends before the image does. */
    IG_ERR_TRUNCATED = 2,
    /* The header declares more pixels (or a wider/taller image) than the caller allows. */
    IG_ERR_TOO_MANY_PIXELS = 3,
    /* The header declares a zero or impossible size. */
    IG_ERR_BAD_DIMENSIONS = 4,
    /* An allocation failed. */
    IG_ERR_OUT_OF_MEMORY = 5,
    /* A valid image using a feature this build cannot handle (e.g. 12-bit JPEG). */
    IG_ERR_UNSUPPORTED = 6,
    /* A caller error (NULL pointer, zero size). */
    IG_ERR_INVALID_ARGUMENT = 7
} ig_error_code;

/* A decoded image: `width * height` RGBA8 pixels, rows top to bottom, no padding. */
typedef struct ig_image_out {
    uint8_t *pixels; /* malloc'd; release with ig_free */
    size_t length;   /* width * height * 4 */
    uint32_t width;
    uint32_t height;
} ig_image_out;

/* An encoded byte stream. */
typedef struct ig_buffer {
    uint8_t *data; /* malloc'd; release with ig_free */
    size_t length;
} ig_buffer;

/* What a header says about an image, read without decoding it. */
typedef struct ig_probe {
    uint32_t width;
    uint32_t height;
    /* PNG bit depth, or JPEG sample precision. */
    uint8_t bit_depth;
    /* PNG colour type (0, 2, 3, 4, 6); 0 for JPEG. */
    uint8_t color_type;
    /* Channels per pixel: derived from the PNG colour type, or the JPEG component count. */
    uint8_t components;
    /* PNG: Adam7 interlaced. JPEG: progressive. */
    uint8_t interlaced;
    /* PNG: an acTL chunk (APNG) appears before the first IDAT. */
    uint8_t animated;
    /* JPEG: low byte of the SOF marker (0xC0 baseline, 0xC2 progressive, 0xC9 arithmetic, ...); 0 for PNG. */
    uint8_t sof_marker;
} ig_probe;

/* Releases a buffer returned by this library. NULL is allowed. */
void ig_free(void *pointer);

/*
 * Decodes a PNG held in memory to 8-bit RGBA with straight alpha: palette, grey, 16-bit and tRNS
 * are converted, and images with a gAMA chunk are converted to sRGB. The header is checked against
 * the limits before any pixel memory is allocated or any image data is inflated; 0 disables a
 * limit. A CRC error in any chunk, missing image data and data ending before IEND are errors.
 * Text, EXIF, ICC and other metadata chunks are skipped.
 */
int ig_png_decode_rgba(
    const uint8_t *data, size_t length, uint32_t max_width, uint32_t max_height, uint64_t max_pixels,
    ig_image_out *out, char *errbuf, size_t errlen);

/*
 * Encodes `width * height` RGBA8 pixels as PNG. With has_alpha == 0 the alpha channel is dropped
 * and an RGB PNG is written. The output carries no metadata beyond what libpng writes for sRGB.
 */
int ig_png_encode_rgba(
    const uint8_t *rgba, uint32_t width, uint32_t height, int has_alpha, ig_buffer *out,
    char *errbuf, size_t errlen);

/*
 * Reads the PNG signature and IHDR, then walks the chunk list up to the first IDAT looking for
 * acTL. Checks the IHDR CRC. Does not call libpng. Returns IG_ERR_CORRUPT for a bad signature,
 * IHDR or CRC, IG_ERR_TRUNCATED when the data ends inside the signature or IHDR, and
 * IG_ERR_BAD_DIMENSIONS for a zero or out-of-range width or height.
 */
int ig_png_probe(const uint8_t *data, size_t length, ig_probe *out);

/*
 * Walks JPEG markers from SOI to the first SOF and reads its size, precision and component count.
 * Does not call libjpeg. Returns IG_ERR_CORRUPT when no SOF precedes SOS/EOI, IG_ERR_TRUNCATED when
 * the data ends first, and IG_ERR_BAD_DIMENSIONS for a zero width or height (DNL-defined height).
 */
int ig_jpeg_probe(const uint8_t *data, size_t length, ig_probe *out);

/*
 * Parses the JPEG headers with libjpeg (jpeg_read_header) without decoding any scan, so the
 * stream's markers, tables and frame parameters are validated by the library that will decode it.
 * Fills `out` like ig_jpeg_probe (except sof_marker). Returns IG_ERR_UNSUPPORTED for a precision this libjpeg build
 * cannot decode, IG_ERR_TRUNCATED when the data ends inside the headers, IG_ERR_CORRUPT otherwise.
 */
int ig_jpeg_read_header(const uint8_t *data, size_t length, ig_probe *out, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* IMAGEGEN_IMAGE_SHIM_H */
