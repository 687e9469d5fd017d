/*
 * libFuzzer target for the C image shim (Sources/CImageShim): feeds each input to the header
 * probes, the EXIF orientation reader and both decoders, with modest limits, and frees everything.
 * Build and run with scripts/fuzz.sh.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "imagegen_image_shim.h"

enum {
    FUZZ_MAX_SIDE = 4096,
    FUZZ_MAX_SCANS = 64,
};
static const uint64_t FUZZ_MAX_PIXELS = 16u * 1000u * 1000u;
static const uint64_t FUZZ_MAX_MEMORY = 256u * 1024u * 1024u;

/* Touch the first and last byte so ASan sees an out-of-bounds length. */
static void touch(const uint8_t *p, size_t n) {
    if (p != NULL && n > 0) {
        volatile uint8_t sink = p[0];
        sink ^= p[n - 1];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    ig_probe probe;

    memset(&probe, 0, sizeof probe);
    (void)ig_png_probe(data, size, &probe);
    memset(&probe, 0, sizeof probe);
    (void)ig_jpeg_probe(data, size, &probe);
    memset(&probe, 0, sizeof probe);
    (void)ig_jpeg_read_header(data, size, &probe, err, sizeof err);

    int orientation = ig_exif_orientation(data, size);
    if (orientation < 1 || orientation > 8) {
        __builtin_trap();
    }

    ig_image_out png;
    ig_image_meta meta;
    memset(&png, 0, sizeof png);
    memset(&meta, 0, sizeof meta);
    int rc = ig_png_decode_rgba_meta(
        data, size, FUZZ_MAX_SIDE, FUZZ_MAX_SIDE, FUZZ_MAX_PIXELS, &png, &meta, err, sizeof err);
    if (rc == IG_OK) {
        if (png.length != (size_t)png.width * png.height * 4u) {
            __builtin_trap();
        }
        touch(png.pixels, png.length);
        touch(meta.icc, meta.icc_length);
        /* Whatever decodes must encode again, with either strategy (chosen from the data). */
        ig_png_encode_options encode;
        memset(&encode, 0, sizeof encode);
        encode.level = size > 1 && (data[size - 2] & 1u) ? 1 : 6;
        encode.strategy = size > 0 ? (int)(data[0] % 3u) : 0;
        encode.threads = 2;
        ig_buffer encoded;
        if (ig_png_encode_rgba(png.pixels, png.width, png.height, 1, &encode, &encoded, err, sizeof err) != IG_OK) {
            __builtin_trap();
        }
        ig_free(encoded.data);
    } else if (png.pixels != NULL || meta.icc != NULL) {
        __builtin_trap(); /* documented: nothing left allocated on failure */
    }
    ig_free(png.pixels);
    ig_free(meta.icc);

    ig_jpeg_options opts;
    memset(&opts, 0, sizeof opts);
    opts.max_width = FUZZ_MAX_SIDE;
    opts.max_height = FUZZ_MAX_SIDE;
    opts.max_pixels = FUZZ_MAX_PIXELS;
    opts.max_scans = FUZZ_MAX_SCANS;
    opts.max_memory = FUZZ_MAX_MEMORY;
    /* Exercise shrink-on-load on some inputs, chosen from the data so runs stay reproducible. */
    if (size > 0 && (data[size - 1] & 1u)) {
        opts.target_width = 256;
        opts.target_height = 256;
    }
    ig_jpeg_out jpg;
    memset(&jpg, 0, sizeof jpg);
    rc = ig_jpeg_decode(data, size, &opts, &jpg, err, sizeof err);
    if (rc == IG_OK) {
        if (jpg.length != (size_t)jpg.width * jpg.height * 4u) {
            __builtin_trap();
        }
        touch(jpg.pixels, jpg.length);
        touch(jpg.meta.icc, jpg.meta.icc_length);
    } else if (jpg.pixels != NULL || jpg.meta.icc != NULL) {
        __builtin_trap();
    }
    ig_free(jpg.pixels);
    ig_free(jpg.meta.icc);
    return 0;
}
