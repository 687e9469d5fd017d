#include "imagegen_image_shim.h"
#include "ig_internal.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Maps a libpng error message to a result code: libpng reports failures as text only. */
static int ig_png_classify(const char *message) {
    if (strstr(message, "end of data") != NULL || strstr(message, "Not enough image data") != NULL ||
        strstr(message, "Read Error") != NULL || strstr(message, "unexpected end") != NULL) {
        return IG_ERR_TRUNCATED;
    }
    if (strstr(message, "ut of memory") != NULL || strstr(message, "nsufficient memory") != NULL) {
        return IG_ERR_OUT_OF_MEMORY;
    }
    return IG_ERR_CORRUPT;
}

/*
 * Decoding uses the classic libpng API rather than png_image: png_image_finish_read decodes Adam7
 * interlaced 16-bit images incorrectly when asked for 8-bit output (libpng issue #853, reproduced
 * with PngSuite basi*16), and it offers no control over CRC handling.
 *
 * Everything that must survive a longjmp out of libpng lives in this struct, reached through a
 * pointer that is not modified after setjmp.
 */
typedef struct ig_png_reader {
    jmp_buf jump;
    const uint8_t *data;
    size_t length;
    size_t offset;
    int hit_end_of_data;
    uint8_t *pixels;
    png_bytep *rows;
    uint8_t *icc;
    size_t icc_length;
    char message[160];
} ig_png_reader;

static void ig_png_error(png_structp png, png_const_charp message) {
    ig_png_reader *reader = (ig_png_reader *)png_get_error_ptr(png);
    snprintf(reader->message, sizeof(reader->message), "%s", message != NULL ? message : "unknown error");
    longjmp(reader->jump, 1);
}

static void ig_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message; /* benign problems (bad tIME, odd ICC profile) are not reasons to refuse an image */
}

static void ig_png_read(png_structp png, png_bytep out, size_t count) {
    ig_png_reader *reader = (ig_png_reader *)png_get_io_ptr(png);
    if (count > reader->length - reader->offset) {
        reader->hit_end_of_data = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(out, reader->data + reader->offset, count);
    reader->offset += count;
}

/* Ancillary chunks that play no part in decoding: skipped unparsed (their CRC is still checked). */
static const png_byte ig_png_ignored_chunks[] =
    "tEXt\0zTXt\0iTXt\0eXIf\0tIME\0sPLT\0hIST\0pHYs\0bKGD\0oFFs\0pCAL\0sCAL\0iCCP\0sBIT\0";

static int ig_png_classify_read(const ig_png_reader *reader) {
    if (reader->hit_end_of_data || strstr(reader->message, "Not enough image data") != NULL) {
        return IG_ERR_TRUNCATED;
    }
    return ig_png_classify(reader->message);
}

/* Metadata chunks read when the caller asks for metadata; skipped otherwise. */
static const png_byte ig_png_metadata_chunks[] = "iCCP\0eXIf\0";

/* Copies the iCCP profile and the eXIf orientation from `info` into `meta` (profile at most once). */
static void ig_png_collect_metadata(png_structp png, png_infop info, ig_png_reader *reader, ig_image_meta *meta) {
    png_charp name = NULL;
    int compression = 0;
    png_bytep profile = NULL;
    png_uint_32 profile_length = 0;
    if (reader->icc == NULL && png_get_iCCP(png, info, &name, &compression, &profile, &profile_length) != 0 &&
        profile != NULL && profile_length > 0) {
        reader->icc = malloc(profile_length);
        if (reader->icc == NULL) {
            png_error(png, "Out of memory for the ICC profile");
        }
        memcpy(reader->icc, profile, profile_length);
        reader->icc_length = profile_length;
    }
    png_uint_32 exif_length = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(png, info, &exif_length, &exif) != 0 && exif != NULL) {
        meta->orientation = (uint8_t)ig_exif_orientation(exif, exif_length);
    }
}

int ig_png_decode_rgba(
    const uint8_t *data, size_t length, uint32_t max_width, uint32_t max_height, uint64_t max_pixels,
    ig_image_out *out, char *errbuf, size_t errlen) {
    return ig_png_decode_rgba_meta(data, length, max_width, max_height, max_pixels, out, NULL, errbuf, errlen);
}

int ig_png_decode_rgba_meta(
    const uint8_t *data, size_t length, uint32_t max_width, uint32_t max_height, uint64_t max_pixels,
    ig_image_out *out, ig_image_meta *meta, char *errbuf, size_t errlen) {
    if (meta != NULL) {
        memset(meta, 0, sizeof(*meta));
        meta->orientation = 1;
    }
    if (out == NULL || data == NULL || length == 0) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no PNG data");
    }
    memset(out, 0, sizeof(*out));

    ig_png_reader state;
    ig_png_reader *const reader = &state;
    memset(reader, 0, sizeof(*reader));
    reader->data = data;
    reader->length = length;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, ig_png_error, ig_png_warning);
    if (png == NULL) {
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the PNG reader");
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the PNG reader");
    }

    if (setjmp(reader->jump)) {
        int code = ig_png_classify_read(reader);
        png_destroy_read_struct(&png, &info, NULL);
        free(reader->rows);
        free(reader->pixels);
        free(reader->icc);
        if (meta != NULL) {
            meta->orientation = 1;
        }
        return ig_fail(code, errbuf, errlen, "invalid PNG: %s", reader->message);
    }

    png_set_read_fn(png, reader, ig_png_read);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    /* The caller's limits are applied below, with a precise error; libpng's own would say "corrupt". */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    /* Bounds on what ancillary chunks may cost: memory per chunk (a compressed iCCP or zTXt can
       expand enormously) and how many ancillary chunks are kept at all. */
    png_set_chunk_malloc_max(png, 16 * 1024 * 1024);
    png_set_chunk_cache_max(png, 128);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(
        png, PNG_HANDLE_CHUNK_NEVER, ig_png_ignored_chunks, (int)(sizeof(ig_png_ignored_chunks) / 5));
    if (meta != NULL) {
        png_set_keep_unknown_chunks(
            png, PNG_HANDLE_CHUNK_AS_DEFAULT, ig_png_metadata_chunks, (int)(sizeof(ig_png_metadata_chunks) / 5));
    }

    png_read_info(png, info);
    if (meta != NULL) {
        ig_png_collect_metadata(png, info, reader, meta);
    }

    png_uint_32 width = 0;
    png_uint_32 height = 0;
    int bit_depth = 0;
    int color_type = 0;
    int interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    uint64_t pixels = (uint64_t)width * (uint64_t)height;
    if (width == 0 || height == 0) {
        png_destroy_read_struct(&png, &info, NULL);
        free(reader->icc);
        if (meta != NULL) {
            meta->orientation = 1;
        }
        return ig_fail(IG_ERR_BAD_DIMENSIONS, errbuf, errlen, "PNG has a zero width or height");
    }
    if ((max_width != 0 && width > max_width) || (max_height != 0 && height > max_height) ||
        (max_pixels != 0 && pixels > max_pixels)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(reader->icc);
        if (meta != NULL) {
            meta->orientation = 1;
        }
        return ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "PNG is %ux%u, over the limit", width, height);
    }
    if (pixels > (uint64_t)(SIZE_MAX / 4u)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(reader->icc);
        if (meta != NULL) {
            meta->orientation = 1;
        }
        return ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "PNG is %ux%u, too large to decode", width, height);
    }

    /* Everything becomes 8-bit RGBA with straight alpha. */
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (has_trns) {
        png_set_tRNS_to_alpha(png);
    }
    if (bit_depth == 16) {
        png_set_scale_16(png);
    }
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_gray_to_rgb(png);
    }
    if ((color_type & PNG_COLOR_MASK_ALPHA) == 0 && !has_trns) {
        png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
    }
    /* Convert images with a gAMA chunk to sRGB; untagged images are taken to be sRGB already. */
    png_set_gamma(png, PNG_DEFAULT_sRGB, PNG_DEFAULT_sRGB);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t row_bytes = (size_t)width * 4u;
    if (png_get_rowbytes(png, info) != row_bytes) {
        png_error(png, "unexpected row size after conversion");
    }
    reader->pixels = malloc((size_t)pixels * 4u);
    reader->rows = malloc((size_t)height * sizeof(png_bytep));
    if (reader->pixels == NULL || reader->rows == NULL) {
        png_error(png, "Out of memory for the image");
    }
    for (png_uint_32 y = 0; y < height; y++) {
        reader->rows[y] = reader->pixels + (size_t)y * row_bytes;
    }
    png_read_image(png, reader->rows);
    /* Reads through IEND, so CRCs and truncation after the image data are caught too. */
    png_read_end(png, meta != NULL ? info : NULL);
    if (meta != NULL) {
        /* An eXIf chunk may also follow the image data. */
        ig_png_collect_metadata(png, info, reader, meta);
        meta->icc = reader->icc;
        meta->icc_length = reader->icc_length;
    }

    png_destroy_read_struct(&png, &info, NULL);
    free(reader->rows);
    out->pixels = reader->pixels;
    out->length = (size_t)pixels * 4u;
    out->width = width;
    out->height = height;
    return IG_OK;
}

int ig_png_encode_rgba(
    const uint8_t *rgba, uint32_t width, uint32_t height, int has_alpha, ig_buffer *out,
    char *errbuf, size_t errlen) {
    if (out == NULL || rgba == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no pixels to encode");
    }
    memset(out, 0, sizeof(*out));
    if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) {
        return ig_fail(IG_ERR_BAD_DIMENSIONS, errbuf, errlen, "cannot encode a %ux%u image", width, height);
    }
    uint64_t pixels = (uint64_t)width * (uint64_t)height;
    if ((uint64_t)width * 4u > (uint64_t)INT32_MAX || pixels > (uint64_t)(SIZE_MAX / 8u)) {
        return ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "cannot encode a %ux%u image", width, height);
    }

    const uint8_t *source = rgba;
    uint8_t *rgb = NULL;
    if (!has_alpha) {
        rgb = malloc((size_t)pixels * 3u);
        if (rgb == NULL) {
            return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot allocate the RGB buffer");
        }
        for (size_t i = 0; i < (size_t)pixels; i++) {
            rgb[i * 3 + 0] = rgba[i * 4 + 0];
            rgb[i * 3 + 1] = rgba[i * 4 + 1];
            rgb[i * 3 + 2] = rgba[i * 4 + 2];
        }
        source = rgb;
    }

    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = has_alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;

    /*
     * One pass when the output fits the first buffer; otherwise libpng reports the size it needs
     * and the second pass writes into a buffer of exactly that size. Small images get the worst-case
     * bound up front; large ones start at half the raw size to keep peak memory down.
     */
    png_alloc_size_t bound = PNG_IMAGE_PNG_SIZE_MAX(image);
    png_alloc_size_t capacity = bound <= (png_alloc_size_t)(32u << 20) ? bound : bound / 2u;
    uint8_t *memory = NULL;
    int code = IG_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        memory = malloc(capacity);
        if (memory == NULL) {
            code = ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot allocate %zu bytes", (size_t)capacity);
            break;
        }
        png_alloc_size_t written = capacity;
        if (png_image_write_to_memory(&image, memory, &written, 0, source, 0, NULL)) {
            uint8_t *shrunk = realloc(memory, written > 0 ? written : 1);
            out->data = shrunk != NULL ? shrunk : memory;
            out->length = written;
            memory = NULL;
            code = IG_OK;
            break;
        }
        free(memory);
        memory = NULL;
        if (written > capacity && attempt == 0) {
            /* Too small: `written` now holds the exact size required. */
            capacity = written;
            png_image_free(&image);
            image.warning_or_error = 0;
            image.message[0] = '\0';
            continue;
        }
        code = ig_fail(ig_png_classify(image.message), errbuf, errlen, "PNG encoding failed: %s", image.message);
        break;
    }
    png_image_free(&image);
    free(rgb);
    return code;
}
