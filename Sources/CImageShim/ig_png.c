#include "imagegen_image_shim.h"
#include "ig_internal.h"

#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

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
    uint8_t *icc;
    size_t icc_length;
    char message[160];
} ig_png_reader;

/* A PNG being decoded row by row: see ig_png_stream_open. */
struct ig_png_stream {
    ig_png_reader reader; /* the error pointer of `png` */
    png_structp png;
    png_infop info;
    uint32_t width;
    uint32_t height;
    uint32_t next_row;
    int failed;
    int finished;
    uint8_t *image;   /* interlaced images only: the whole image, decoded at open */
    png_bytep *rows;  /* row pointers into `image`, or scratch for png_read_rows */
};

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

/* Copies the iCCP profile from `info` into the reader (at most once). */
static void ig_png_collect_icc(png_structp png, png_infop info, ig_png_reader *reader) {
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
}

/*
 * The orientation of the first eXIf chunk, wherever it is (PNG allows it after the image data, but
 * the orientation is needed before the rows are resized). Walks chunk headers only; CRCs are checked
 * by libpng as it reads through IEND. 1 without a readable eXIf chunk.
 */
static int ig_png_exif_orientation(const uint8_t *data, size_t length) {
    size_t offset = 8;
    while (offset <= length && length - offset >= 12) {
        uint32_t chunk_length = ig_be32(data + offset);
        const uint8_t *type = data + offset + 4;
        if (chunk_length > length - offset - 12) {
            return 1;
        }
        if (memcmp(type, "eXIf", 4) == 0) {
            return ig_exif_orientation(data + offset + 8, chunk_length);
        }
        if (memcmp(type, "IEND", 4) == 0) {
            return 1;
        }
        offset += 12u + (size_t)chunk_length;
    }
    return 1;
}

void ig_png_stream_close(ig_png_stream *stream) {
    if (stream == NULL) {
        return;
    }
    png_destroy_read_struct(&stream->png, &stream->info, NULL);
    free(stream->rows);
    free(stream->image);
    free(stream->reader.icc);
    free(stream);
}

/* Reads through IEND, so CRCs and truncation after the image data are caught too. */
static void ig_png_stream_finish(ig_png_stream *stream) {
    if (!stream->finished) {
        png_read_end(stream->png, NULL);
        stream->finished = 1;
    }
}

int ig_png_stream_open(
    const uint8_t *data, size_t length, uint32_t max_width, uint32_t max_height, uint64_t max_pixels,
    ig_png_stream **out, ig_stream_info *info_out, char *errbuf, size_t errlen) {
    if (out == NULL || info_out == NULL || data == NULL || length == 0) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no PNG data");
    }
    *out = NULL;
    memset(info_out, 0, sizeof(*info_out));
    info_out->orientation = 1;

    ig_png_stream *const stream = calloc(1, sizeof(ig_png_stream));
    if (stream == NULL) {
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the PNG reader");
    }
    ig_png_reader *const reader = &stream->reader;
    reader->data = data;
    reader->length = length;

    stream->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, ig_png_error, ig_png_warning);
    if (stream->png != NULL) {
        stream->info = png_create_info_struct(stream->png);
    }
    if (stream->png == NULL || stream->info == NULL) {
        ig_png_stream_close(stream);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the PNG reader");
    }
    png_structp png = stream->png;
    png_infop info = stream->info;

    if (setjmp(reader->jump)) {
        int code = ig_png_classify_read(reader);
        int written = ig_fail(code, errbuf, errlen, "invalid PNG: %s", reader->message);
        ig_png_stream_close(stream);
        return written;
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
    static const png_byte icc_chunk[] = "iCCP";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_AS_DEFAULT, icc_chunk, 1);

    png_read_info(png, info);
    ig_png_collect_icc(png, info, reader);

    png_uint_32 width = 0;
    png_uint_32 height = 0;
    int bit_depth = 0;
    int color_type = 0;
    int interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    uint64_t pixels = (uint64_t)width * (uint64_t)height;
    int code = IG_OK;
    if (width == 0 || height == 0) {
        code = ig_fail(IG_ERR_BAD_DIMENSIONS, errbuf, errlen, "PNG has a zero width or height");
    } else if ((max_width != 0 && width > max_width) || (max_height != 0 && height > max_height) ||
               (max_pixels != 0 && pixels > max_pixels)) {
        code = ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "PNG is %ux%u, over the limit", width, height);
    } else if (pixels > (uint64_t)(SIZE_MAX / 4u)) {
        code = ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "PNG is %ux%u, too large to decode", width, height);
    }
    if (code != IG_OK) {
        ig_png_stream_close(stream);
        return code;
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
    /*
     * gAMA, cHRM and sBIT are ignored: samples are taken as sRGB unless an iCCP profile says
     * otherwise (as most image libraries and browsers do), so the pixels are the file's own values.
     */
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t row_bytes = (size_t)width * 4u;
    if (png_get_rowbytes(png, info) != row_bytes) {
        png_error(png, "unexpected row size after conversion");
    }
    stream->width = width;
    stream->height = height;
    if (interlace != PNG_INTERLACE_NONE) {
        /* Adam7 spreads every row over seven passes: the whole image is decoded here. */
        stream->image = malloc((size_t)pixels * 4u);
        stream->rows = malloc((size_t)height * sizeof(png_bytep));
        if (stream->image == NULL || stream->rows == NULL) {
            png_error(png, "Out of memory for the image");
        }
        for (png_uint_32 y = 0; y < height; y++) {
            stream->rows[y] = stream->image + (size_t)y * row_bytes;
        }
        png_read_image(png, stream->rows);
        ig_png_stream_finish(stream);
    }

    info_out->width = width;
    info_out->height = height;
    info_out->source_width = width;
    info_out->source_height = height;
    info_out->orientation = (uint8_t)ig_png_exif_orientation(data, length);
    info_out->icc = reader->icc;
    info_out->icc_length = reader->icc_length;
    *out = stream;
    return IG_OK;
}

int ig_png_stream_read(ig_png_stream *stream, uint8_t *rows, uint32_t count, char *errbuf, size_t errlen) {
    if (stream == NULL || rows == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no PNG reader");
    }
    if (stream->failed) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "the PNG reader already failed");
    }
    if (count > stream->height - stream->next_row) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no more rows");
    }
    ig_png_reader *const reader = &stream->reader;
    if (setjmp(reader->jump)) {
        stream->failed = 1;
        return ig_fail(ig_png_classify_read(reader), errbuf, errlen, "invalid PNG: %s", reader->message);
    }
    size_t row_bytes = (size_t)stream->width * 4u;
    if (stream->image != NULL) {
        memcpy(rows, stream->image + (size_t)stream->next_row * row_bytes, (size_t)count * row_bytes);
    } else {
        for (uint32_t i = 0; i < count; i++) {
            png_read_row(stream->png, rows + (size_t)i * row_bytes, NULL);
        }
    }
    stream->next_row += count;
    if (stream->next_row == stream->height) {
        ig_png_stream_finish(stream);
    }
    return IG_OK;
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
    if (out == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no PNG data");
    }
    memset(out, 0, sizeof(*out));
    ig_png_stream *stream = NULL;
    ig_stream_info info;
    int code = ig_png_stream_open(data, length, max_width, max_height, max_pixels, &stream, &info, errbuf, errlen);
    if (code != IG_OK) {
        return code;
    }
    size_t size = (size_t)info.width * (size_t)info.height * 4u;
    uint8_t *pixels = malloc(size);
    if (pixels == NULL) {
        ig_png_stream_close(stream);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot allocate a %ux%u image", info.width, info.height);
    }
    code = ig_png_stream_read(stream, pixels, info.height, errbuf, errlen);
    if (code != IG_OK) {
        free(pixels);
        ig_png_stream_close(stream);
        return code;
    }
    if (meta != NULL) {
        meta->orientation = info.orientation;
        if (info.icc != NULL) {
            meta->icc = malloc(info.icc_length);
            if (meta->icc == NULL) {
                free(pixels);
                ig_png_stream_close(stream);
                meta->orientation = 1;
                return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot copy the ICC profile");
            }
            memcpy(meta->icc, info.icc, info.icc_length);
            meta->icc_length = info.icc_length;
        }
    }
    ig_png_stream_close(stream);
    out->pixels = pixels;
    out->length = size;
    out->width = info.width;
    out->height = info.height;
    return IG_OK;
}

/*
 * PNG encoding uses the classic libpng API, so the zlib level, strategy and row filters can be
 * chosen. State that must survive a longjmp out of libpng lives in this struct.
 */
typedef struct ig_png_writer {
    jmp_buf jump;
    uint8_t *data;
    size_t length;
    size_t capacity;
    char message[160];
} ig_png_writer;

static void ig_png_write_error(png_structp png, png_const_charp message) {
    ig_png_writer *writer = (ig_png_writer *)png_get_error_ptr(png);
    snprintf(writer->message, sizeof(writer->message), "%s", message != NULL ? message : "unknown error");
    longjmp(writer->jump, 1);
}

static void ig_png_write(png_structp png, png_bytep data, size_t count) {
    ig_png_writer *writer = (ig_png_writer *)png_get_io_ptr(png);
    if (count > writer->capacity - writer->length) {
        size_t capacity = writer->capacity > 0 ? writer->capacity : 65536u;
        while (count > capacity - writer->length) {
            if (capacity > SIZE_MAX / 2u) {
                png_error(png, "Out of memory for the output");
            }
            capacity *= 2u;
        }
        uint8_t *grown = realloc(writer->data, capacity);
        if (grown == NULL) {
            png_error(png, "Out of memory for the output");
        }
        writer->data = grown;
        writer->capacity = capacity;
    }
    memcpy(writer->data + writer->length, data, count);
    writer->length += count;
}

static void ig_png_flush(png_structp png) { (void)png; }

static inline uint8_t ig_paeth(int a, int b, int c) {
    int p = a + b - c;
    int pa = abs(p - a);
    int pb = abs(p - b);
    int pc = abs(p - c);
    if (pa <= pb && pa <= pc) {
        return (uint8_t)a;
    }
    return (uint8_t)(pb <= pc ? b : c);
}

/*
 * The smallest zlib window that covers `length` bytes (9 to 15 bits): zlib allocates memory in
 * proportion, and a small image should not pay for a 32 KB window (libpng does the same).
 */
static int ig_window_bits(size_t length) {
    int bits = 9;
    while (bits < 15 && ((size_t)1 << bits) < length) {
        bits++;
    }
    return bits;
}

/* ---- Filtering and compression of the image data ----------------------------------------------- */

/* Row data (filter bytes included) up to this size is stored uncompressed. */
enum { IG_PNG_STORED_MAX_BYTES = 512 };

enum { IG_FILTER_NONE = 0, IG_FILTER_SUB = 1, IG_FILTER_UP = 2, IG_FILTER_AVERAGE = 3, IG_FILTER_PAETH = 4 };

/*
 * Filters one row of `width` pixels taken from RGBA rows (the first `channels` bytes of each pixel)
 * into `out`: the filter type byte, then the filtered bytes. `above` is NULL for the first row of
 * the image. `adaptive` tries all five filters and keeps the one with the smallest sum of absolute
 * values (libpng's heuristic); otherwise Paeth. `scratch` holds 5 rows of width * channels bytes.
 */
/* The Paeth filter of one row of RGBA pixels, keeping `CHANNELS` of each, into out[1...]. */
#define IG_PAETH_ROW(CHANNELS)                                                                       \
    do {                                                                                             \
        uint8_t *dst = out + 1;                                                                      \
        if (above == NULL) {                                                                         \
            /* No row above: the predictor is the pixel to the left. */                             \
            for (int c = 0; c < (CHANNELS); c++) {                                                   \
                *dst++ = row[c];                                                                     \
            }                                                                                        \
            for (uint32_t x = 1; x < width; x++) {                                                   \
                for (int c = 0; c < (CHANNELS); c++) {                                               \
                    *dst++ = (uint8_t)(row[x * 4u + c] - row[(x - 1) * 4u + c]);                     \
                }                                                                                    \
            }                                                                                        \
        } else {                                                                                     \
            for (int c = 0; c < (CHANNELS); c++) {                                                   \
                *dst++ = (uint8_t)(row[c] - above[c]);                                               \
            }                                                                                        \
            for (uint32_t x = 1; x < width; x++) {                                                   \
                for (int c = 0; c < (CHANNELS); c++) {                                               \
                    *dst++ = (uint8_t)(row[x * 4u + c] -                                             \
                                       ig_paeth(row[(x - 1) * 4u + c], above[x * 4u + c], above[(x - 1) * 4u + c])); \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    } while (0)

static void ig_filter_row(
    const uint8_t *row, const uint8_t *above, uint32_t width, int channels, int adaptive, uint8_t *scratch,
    uint8_t *out) {
    size_t n = (size_t)width * (size_t)channels;
    if (!adaptive) {
        out[0] = IG_FILTER_PAETH;
        if (channels == 4) {
            IG_PAETH_ROW(4);
        } else {
            IG_PAETH_ROW(3);
        }
        return;
    }
    /* All five filters in one pass, each residual's magnitude summed (libpng's heuristic). */
    uint8_t *none = scratch;
    uint8_t *sub = scratch + n;
    uint8_t *up_row = scratch + 2u * n;
    uint8_t *average = scratch + 3u * n;
    uint8_t *paeth = scratch + 4u * n;
    uint64_t sums[5] = {0, 0, 0, 0, 0};
    size_t i = 0;
    for (uint32_t x = 0; x < width; x++) {
        for (int c = 0; c < channels; c++, i++) {
            int value = row[x * 4u + c];
            int left = x > 0 ? row[(x - 1) * 4u + c] : 0;
            int up = above != NULL ? above[x * 4u + c] : 0;
            int diagonal = (above != NULL && x > 0) ? above[(x - 1) * 4u + c] : 0;
            uint8_t r0 = (uint8_t)value;
            uint8_t r1 = (uint8_t)(value - left);
            uint8_t r2 = (uint8_t)(value - up);
            uint8_t r3 = (uint8_t)(value - ((left + up) >> 1));
            uint8_t r4 = (uint8_t)(value - ig_paeth(left, up, diagonal));
            none[i] = r0;
            sub[i] = r1;
            up_row[i] = r2;
            average[i] = r3;
            paeth[i] = r4;
            sums[0] += r0 < 128 ? r0 : 256u - r0;
            sums[1] += r1 < 128 ? r1 : 256u - r1;
            sums[2] += r2 < 128 ? r2 : 256u - r2;
            sums[3] += r3 < 128 ? r3 : 256u - r3;
            sums[4] += r4 < 128 ? r4 : 256u - r4;
        }
    }
    int best = 0;
    for (int filter = 1; filter < 5; filter++) {
        if (sums[filter] < sums[best]) {
            best = filter;
        }
    }
    out[0] = (uint8_t)best;
    memcpy(out + 1, scratch + (size_t)best * n, n);
}

/*
 * One band of rows, filtered and deflated on its own so that bands compress in parallel. The first
 * band carries the zlib header; every band but the last ends with a sync flush on a byte boundary
 * and the last with the final block, so the bands concatenate into one deflate stream (the way
 * pigz does it). A band after the first is primed with the last 32 KB of the band before it.
 */
typedef struct ig_deflate_band {
    const uint8_t *rgba;
    uint32_t width;
    uint32_t first_row;
    uint32_t rows;
    int channels;
    int level;
    int strategy; /* zlib strategy */
    int adaptive;
    int is_first;
    int is_last;
    uint8_t *filtered; /* rows * (1 + width * channels) bytes */
    size_t filtered_length;
    const uint8_t *dictionary;
    size_t dictionary_length;
    uint8_t *out;
    size_t out_length;
    uLong adler;
    int ok;
} ig_deflate_band;

static void ig_filter_band(ig_deflate_band *band) {
    size_t n = (size_t)band->width * (size_t)band->channels;
    uint8_t *scratch = band->adaptive ? malloc(5u * n) : NULL;
    if (band->adaptive && scratch == NULL) {
        return;
    }
    for (uint32_t r = 0; r < band->rows; r++) {
        uint32_t y = band->first_row + r;
        const uint8_t *row = band->rgba + (size_t)y * band->width * 4u;
        const uint8_t *above = y > 0 ? row - (size_t)band->width * 4u : NULL;
        ig_filter_row(row, above, band->width, band->channels, band->adaptive, scratch,
                      band->filtered + (size_t)r * (n + 1u));
    }
    free(scratch);
    band->filtered_length = (size_t)band->rows * (n + 1u);
}

static void *ig_deflate_band_run(void *argument) {
    ig_deflate_band *band = argument;
    band->ok = 0;
    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    /* With several bands the header's window must cover the dictionaries of the later ones. */
    int bits = band->is_first && band->is_last ? ig_window_bits(band->filtered_length) : 15;
    /* The hash table to match the window: a small image then costs a few kilobytes of state, not
     * the 256 KB that zlib allocates and clears for its defaults. */
    int mem_level = bits - 7 < 1 ? 1 : (bits - 7 > 8 ? 8 : bits - 7);
    if (deflateInit2(&stream, band->level, Z_DEFLATED, band->is_first ? bits : -bits, mem_level, band->strategy) !=
        Z_OK) {
        return NULL;
    }
    if (band->dictionary_length > 0 &&
        deflateSetDictionary(&stream, band->dictionary, (uInt)band->dictionary_length) != Z_OK) {
        deflateEnd(&stream);
        return NULL;
    }
    uLong bound = deflateBound(&stream, (uLong)band->filtered_length) + 16u;
    band->out = malloc(bound);
    if (band->out == NULL) {
        deflateEnd(&stream);
        return NULL;
    }
    stream.next_in = band->filtered;
    stream.avail_in = (uInt)band->filtered_length;
    stream.next_out = band->out;
    stream.avail_out = (uInt)bound;
    int flush = band->is_last ? Z_FINISH : Z_SYNC_FLUSH;
    int result = deflate(&stream, flush);
    if ((band->is_last && result == Z_STREAM_END) || (!band->is_last && result == Z_OK && stream.avail_in == 0)) {
        band->out_length = (size_t)stream.total_out;
        band->ok = 1;
    }
    deflateEnd(&stream);
    band->adler = adler32(adler32(0L, Z_NULL, 0), band->filtered, (uInt)band->filtered_length);
    return NULL;
}

/* Compressed size of already filtered rows at level 1 with a zlib strategy; SIZE_MAX on failure. */
static size_t ig_compressed_size(uint8_t *filtered, size_t length, int strategy) {
    ig_deflate_band band;
    memset(&band, 0, sizeof(band));
    band.level = 1;
    band.strategy = strategy;
    band.is_first = 1;
    band.is_last = 1;
    band.filtered = filtered;
    band.filtered_length = length;
    ig_deflate_band_run(&band);
    free(band.out);
    return band.ok ? band.out_length : SIZE_MAX;
}

/*
 * Chooses run-length coding or full deflate for an image by compressing a sample of it both ways:
 * up to 8 bands of 4 rows spread over the image, Paeth-filtered as the encoder would. Photographs
 * and renders (noise, gradients) have almost no long repeats: run-length coding of Paeth residuals
 * is as small as deflate and several times faster. Screenshots, text and flat art repeat whole
 * runs of pixels, and deflate's matches make them much smaller.
 */
static int ig_png_prefers_rle(const uint8_t *rgba, uint32_t width, uint32_t height, int channels) {
    const uint32_t band_rows = 4;
    uint32_t bands = height / band_rows >= 8 ? 8 : (height + band_rows - 1) / band_rows;
    size_t row_bytes = (size_t)width * (size_t)channels + 1u;
    uint8_t *sample = malloc((size_t)bands * band_rows * row_bytes);
    if (sample == NULL) {
        return 0;
    }
    size_t used = 0;
    for (uint32_t band = 0; band < bands; band++) {
        uint32_t first = (uint32_t)((uint64_t)height * band / bands);
        for (uint32_t y = first; y < first + band_rows && y < height; y++) {
            const uint8_t *row = rgba + (size_t)y * width * 4u;
            ig_filter_row(row, y > first ? row - (size_t)width * 4u : NULL, width, channels, 0, NULL, sample + used);
            used += row_bytes;
        }
    }
    size_t rle = ig_compressed_size(sample, used, Z_RLE);
    size_t deflated = ig_compressed_size(sample, used, Z_DEFAULT_STRATEGY);
    free(sample);
    return rle != SIZE_MAX && rle <= deflated;
}

/* Filtered and compressed image data: the whole zlib stream for the IDAT chunks. */
static int ig_png_compress(
    const uint8_t *rgba, uint32_t width, uint32_t height, int channels, int level, int rle, int threads,
    uint8_t **out, size_t *out_length) {
    size_t n = (size_t)width * (size_t)channels;
    if (n + 1u > (size_t)UINT32_MAX / 2u) {
        return IG_ERR_TOO_MANY_PIXELS;
    }
    /* A second band only pays for its thread on a big enough image. */
    int bands = (threads > 1 && (uint64_t)width * height >= (1u << 18) && height >= 2) ? 2 : 1;
    /* zlib takes at most 4 GB per call: keep each band well below. */
    while ((uint64_t)height / (uint64_t)bands * (n + 1u) > (1u << 30) && bands < (int)height) {
        bands *= 2;
    }
    ig_deflate_band *band = calloc((size_t)bands, sizeof(ig_deflate_band));
    if (band == NULL) {
        return IG_ERR_OUT_OF_MEMORY;
    }
    int code = IG_OK;
    for (int b = 0; b < bands; b++) {
        band[b].rgba = rgba;
        band[b].width = width;
        band[b].first_row = (uint32_t)((uint64_t)height * (uint64_t)b / (uint64_t)bands);
        band[b].rows = (uint32_t)((uint64_t)height * (uint64_t)(b + 1) / (uint64_t)bands) - band[b].first_row;
        band[b].channels = channels;
        band[b].level = level;
        band[b].strategy = level == 0 ? Z_DEFAULT_STRATEGY : (rle ? Z_RLE : Z_FILTERED);
        band[b].adaptive = level > 0 && !rle;
        band[b].is_first = b == 0;
        band[b].is_last = b == bands - 1;
        band[b].filtered = malloc((size_t)band[b].rows * (n + 1u) + 1u);
        if (band[b].filtered == NULL) {
            code = IG_ERR_OUT_OF_MEMORY;
        }
    }
    if (code == IG_OK) {
        /* Filtering first: each band's dictionary is the filtered data just before it. */
        for (int b = 0; b < bands; b++) {
            if (level == 0) {
                for (uint32_t r = 0; r < band[b].rows; r++) {
                    uint8_t *dst = band[b].filtered + (size_t)r * (n + 1u);
                    const uint8_t *row = rgba + (size_t)(band[b].first_row + r) * width * 4u;
                    dst[0] = IG_FILTER_NONE;
                    for (uint32_t x = 0; x < width; x++) {
                        memcpy(dst + 1 + (size_t)x * channels, row + (size_t)x * 4u, (size_t)channels);
                    }
                }
                band[b].filtered_length = (size_t)band[b].rows * (n + 1u);
            } else {
                ig_filter_band(&band[b]);
            }
            if (band[b].filtered_length != (size_t)band[b].rows * (n + 1u)) {
                code = IG_ERR_OUT_OF_MEMORY;
            }
        }
    }
    if (code == IG_OK) {
        for (int b = 1; b < bands; b++) {
            size_t previous = band[b - 1].filtered_length;
            size_t length = previous < 32768u ? previous : 32768u;
            band[b].dictionary = band[b - 1].filtered + previous - length;
            band[b].dictionary_length = rle ? 0 : length; /* run-length coding looks back one byte only */
        }
        pthread_t helper;
        int helper_started = 0;
        if (bands == 2 && pthread_create(&helper, NULL, ig_deflate_band_run, &band[1]) == 0) {
            helper_started = 1;
        }
        for (int b = 0; b < bands; b++) {
            if (b == 1 && helper_started) {
                continue;
            }
            ig_deflate_band_run(&band[b]);
        }
        if (helper_started) {
            pthread_join(helper, NULL);
        }
        size_t total = 4u;
        for (int b = 0; b < bands; b++) {
            if (!band[b].ok) {
                code = IG_ERR_OUT_OF_MEMORY;
            }
            total += band[b].out_length;
        }
        uint8_t *data = code == IG_OK ? malloc(total) : NULL;
        if (code == IG_OK && data == NULL) {
            code = IG_ERR_OUT_OF_MEMORY;
        }
        if (code == IG_OK) {
            size_t used = 0;
            uLong adler = band[0].adler;
            for (int b = 0; b < bands; b++) {
                memcpy(data + used, band[b].out, band[b].out_length);
                used += band[b].out_length;
                if (b > 0) {
                    adler = adler32_combine(adler, band[b].adler, (z_off_t)band[b].filtered_length);
                }
            }
            if (bands > 1) {
                /* The first band's zlib stream was not finished: append the trailer for all of it. */
                data[used++] = (uint8_t)(adler >> 24);
                data[used++] = (uint8_t)(adler >> 16);
                data[used++] = (uint8_t)(adler >> 8);
                data[used++] = (uint8_t)adler;
            }
            *out = data;
            *out_length = used;
        }
    }
    for (int b = 0; b < bands; b++) {
        free(band[b].filtered);
        free(band[b].out);
    }
    free(band);
    return code;
}

int ig_png_encode_rgba(
    const uint8_t *rgba, uint32_t width, uint32_t height, int has_alpha, const ig_png_encode_options *opts,
    ig_buffer *out, char *errbuf, size_t errlen) {
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
    int level = opts != NULL ? opts->level : 6;
    int strategy = opts != NULL ? opts->strategy : IG_PNG_STRATEGY_AUTOMATIC;
    if (level < 0 || level > 9) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "zlib level %d is not in 0...9", level);
    }
    int channels = has_alpha ? 4 : 3;
    /* Tiny images are stored: building deflate's Huffman tables costs about 10 us whatever the
     * input, to save at most a few hundred bytes on row data this small (an 8x8 RGBA image). */
    if ((uint64_t)height * (1u + (uint64_t)width * (uint64_t)channels) <= IG_PNG_STORED_MAX_BYTES) {
        level = 0;
    }
    int rle = 0;
    if (level > 0) {
        if (strategy == IG_PNG_STRATEGY_RLE) {
            rle = 1;
        } else if (strategy == IG_PNG_STRATEGY_AUTOMATIC && pixels >= (1u << 16)) {
            /* Below 64K pixels deflate costs little either way: no sample. */
            rle = ig_png_prefers_rle(rgba, width, height, channels);
        }
    }

    uint8_t *idat = NULL;
    size_t idat_length = 0;
    int threads = opts != NULL ? opts->threads : 1;
    int code = ig_png_compress(rgba, width, height, channels, level, rle, threads, &idat, &idat_length);
    if (code != IG_OK) {
        return ig_fail(code, errbuf, errlen, "cannot compress a %ux%u image", width, height);
    }

    /* libpng writes the signature, IHDR and the chunk framing with CRCs; the data is ours. */
    ig_png_writer state;
    ig_png_writer *const writer = &state;
    memset(writer, 0, sizeof(*writer));
    /* The size is known: signature, IHDR, IEND and 12 bytes per IDAT chunk besides the data. */
    writer->capacity = idat_length + 64u + 12u * (idat_length / (256u * 1024u) + 1u);
    writer->data = malloc(writer->capacity);
    if (writer->data == NULL) {
        free(idat);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot allocate the PNG output");
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, writer, ig_png_write_error, ig_png_warning);
    if (png == NULL) {
        free(writer->data);
        free(idat);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the PNG writer");
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        free(writer->data);
        free(idat);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the PNG writer");
    }
    if (setjmp(writer->jump)) {
        png_destroy_write_struct(&png, &info);
        free(writer->data);
        free(idat);
        return ig_fail(ig_png_classify(writer->message), errbuf, errlen, "PNG encoding failed: %s", writer->message);
    }

    png_set_write_fn(png, writer, ig_png_write, ig_png_flush);
    png_set_IHDR(
        png, info, width, height, 8, has_alpha ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
        PNG_COMPRESSION_TYPE_BASE, PNG_FILTER_TYPE_BASE);
    /* Untagged output means sRGB to every reader; no other chunk is written. */
    png_write_info(png, info);
    const size_t chunk = 256u * 1024u;
    for (size_t offset = 0; offset < idat_length; offset += chunk) {
        size_t length = idat_length - offset < chunk ? idat_length - offset : chunk;
        png_write_chunk(png, (png_const_bytep) "IDAT", idat + offset, length);
    }
    png_write_chunk(png, (png_const_bytep) "IEND", NULL, 0);
    png_destroy_write_struct(&png, &info);
    free(idat);

    uint8_t *shrunk = realloc(writer->data, writer->length > 0 ? writer->length : 1);
    out->data = shrunk != NULL ? shrunk : writer->data;
    out->length = writer->length;
    return IG_OK;
}
