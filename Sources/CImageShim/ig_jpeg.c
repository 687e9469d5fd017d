#include "imagegen_image_shim.h"
#include "ig_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* libjpeg reports fatal errors through error_exit, which must not return: jump back instead. */
typedef struct ig_jpeg_error {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    int saw_end_of_data;
    char message[JMSG_LENGTH_MAX];
} ig_jpeg_error;

static void ig_jpeg_error_exit(j_common_ptr cinfo) {
    ig_jpeg_error *error = (ig_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, error->message);
    longjmp(error->jump, 1);
}

/* Warnings and trace messages are recorded, never printed. */
static void ig_jpeg_emit_message(j_common_ptr cinfo, int level) {
    ig_jpeg_error *error = (ig_jpeg_error *)cinfo->err;
    if (level < 0) {
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
            error->saw_end_of_data = 1;
        }
        cinfo->err->num_warnings++;
    }
}

static void ig_jpeg_output_message(j_common_ptr cinfo) {
    (void)cinfo;
}

static int ig_jpeg_classify(const ig_jpeg_error *error) {
    switch (error->manager.msg_code) {
    case JERR_BAD_PRECISION:
    case JERR_SOF_UNSUPPORTED:
    case JERR_NOT_COMPILED:
    case JERR_ARITH_NOTIMPL:
        return IG_ERR_UNSUPPORTED;
    case JERR_IMAGE_TOO_BIG:
        return IG_ERR_TOO_MANY_PIXELS;
    case JERR_EMPTY_IMAGE:
        return IG_ERR_BAD_DIMENSIONS;
    case JERR_OUT_OF_MEMORY:
        return IG_ERR_OUT_OF_MEMORY;
    default:
        return error->saw_end_of_data ? IG_ERR_TRUNCATED : IG_ERR_CORRUPT;
    }
}

int ig_jpeg_read_header(const uint8_t *data, size_t length, ig_probe *out, char *errbuf, size_t errlen) {
    if (out == NULL || data == NULL || length == 0) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no JPEG data");
    }
    memset(out, 0, sizeof(*out));
    if ((uint64_t)length > (uint64_t)(unsigned long)-1) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "JPEG data too long");
    }

    struct jpeg_decompress_struct cinfo;
    ig_jpeg_error error;
    memset(&cinfo, 0, sizeof(cinfo));
    memset(&error, 0, sizeof(error));
    cinfo.err = jpeg_std_error(&error.manager);
    error.manager.error_exit = ig_jpeg_error_exit;
    error.manager.emit_message = ig_jpeg_emit_message;
    error.manager.output_message = ig_jpeg_output_message;

    if (setjmp(error.jump)) {
        int code = ig_jpeg_classify(&error);
        jpeg_destroy_decompress(&cinfo);
        return ig_fail(code, errbuf, errlen, "invalid JPEG: %s", error.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)length);
    (void)jpeg_read_header(&cinfo, TRUE);

    out->width = cinfo.image_width;
    out->height = cinfo.image_height;
    out->bit_depth = (uint8_t)cinfo.data_precision;
    out->components = (uint8_t)cinfo.num_components;
    out->interlaced = cinfo.progressive_mode ? 1 : 0;
    jpeg_destroy_decompress(&cinfo);
    return IG_OK;
}

/* ---- Full decoding ---------------------------------------------------------------------------- */

#include <limits.h>
#include <stdlib.h>

enum { IG_JPEG_DEFAULT_MAX_SCANS = 64 };
static const uint64_t IG_JPEG_DEFAULT_MAX_MEMORY = 512u * 1024u * 1024u;

/* Everything that must survive a longjmp out of libjpeg, reached through a pointer set before setjmp. */
typedef struct ig_jpeg_decoder {
    ig_jpeg_error error; /* first: cinfo.err points at error.manager */
    int damaged;
} ig_jpeg_decoder;

/*
 * Warnings that only describe unusual metadata: the image data is still intact. Every other
 * warning means the entropy-coded data or the marker structure is damaged, and libjpeg would go on
 * to produce made-up pixels, so decoding stops there.
 */
static int ig_jpeg_is_benign_warning(int code) {
    return code == JWRN_ADOBE_XFORM || code == JWRN_BOGUS_ICC || code == JWRN_JFIF_MAJOR;
}

static void ig_jpeg_decode_emit_message(j_common_ptr cinfo, int level) {
    ig_jpeg_decoder *decoder = (ig_jpeg_decoder *)cinfo->err;
    if (level >= 0) {
        return; /* trace messages */
    }
    cinfo->err->num_warnings++;
    if (ig_jpeg_is_benign_warning(cinfo->err->msg_code)) {
        return;
    }
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        decoder->error.saw_end_of_data = 1;
    }
    decoder->damaged = 1;
    (*cinfo->err->format_message)(cinfo, decoder->error.message);
    longjmp(decoder->error.jump, 1);
}

/*
 * Counts SOS markers by walking the marker segments from SOI, skipping entropy-coded data (where
 * 0xFF is always followed by 0x00, a restart marker or fill). Stops at EOI, at the end of the data
 * or at anything malformed, which libjpeg will then report. Returns the count, at most limit + 1.
 */
static uint32_t ig_jpeg_count_scans(const uint8_t *data, size_t length, uint32_t limit) {
    uint32_t scans = 0;
    if (length < 4 || data[0] != 0xFF || data[1] != 0xD8) {
        return 0;
    }
    size_t i = 2;
    while (i + 1 < length) {
        if (data[i] != 0xFF) {
            i++; /* entropy-coded data, or garbage libjpeg will refuse */
            continue;
        }
        uint8_t marker = data[i + 1];
        if (marker == 0xFF) {
            i++; /* fill byte */
            continue;
        }
        if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
            i += 2; /* stuffed byte, TEM, restart marker or SOI: no length field */
            continue;
        }
        if (marker == 0xD9) {
            break;
        }
        if (length - i < 4) {
            break;
        }
        size_t segment = ig_be16(data + i + 2);
        if (segment < 2) {
            break;
        }
        if (marker == 0xDA && ++scans > limit) {
            break;
        }
        if (length - i - 2 < segment) {
            break;
        }
        i += 2 + segment;
    }
    return scans;
}

/*
 * CMYK8 to opaque RGBA8 in place, without a profile. `inverted` != 0 for Adobe-style data, where 0
 * means full ink (R = C * K / 255); otherwise 255 means full ink (R = (255 - C) * (255 - K) / 255).
 */
static void ig_cmyk_to_rgba_in_place(uint8_t *pixels, size_t pixel_count, int inverted) {
    for (size_t i = 0; i < pixel_count; i++) {
        uint8_t *p = pixels + i * 4u;
        unsigned c = p[0];
        unsigned m = p[1];
        unsigned y = p[2];
        unsigned k = p[3];
        if (!inverted) {
            c = 255u - c;
            m = 255u - m;
            y = 255u - y;
            k = 255u - k;
        }
        p[0] = (uint8_t)((c * k + 127u) / 255u);
        p[1] = (uint8_t)((m * k + 127u) / 255u);
        p[2] = (uint8_t)((y * k + 127u) / 255u);
        p[3] = 255;
    }
}

/* The orientation from the first APP1 "Exif\0\0" segment libjpeg saved; 1 without one. */
static int ig_jpeg_orientation(j_decompress_ptr cinfo) {
    for (jpeg_saved_marker_ptr marker = cinfo->marker_list; marker != NULL; marker = marker->next) {
        if (marker->marker == JPEG_APP0 + 1 && marker->data_length >= 6 &&
            memcmp(marker->data, "Exif\0\0", 6) == 0) {
            return ig_exif_orientation(marker->data, marker->data_length);
        }
    }
    return 1;
}

/* Picks the DCT scale n/8 giving the smallest output still at least target_width × target_height. */
static unsigned ig_jpeg_scale_numerator(uint32_t width, uint32_t height, uint32_t target_width, uint32_t target_height) {
    if (target_width == 0 && target_height == 0) {
        return 8;
    }
    for (unsigned n = 1; n < 8; n++) {
        uint64_t scaled_width = ((uint64_t)width * n + 7u) / 8u;
        uint64_t scaled_height = ((uint64_t)height * n + 7u) / 8u;
        if ((target_width == 0 || scaled_width >= target_width) &&
            (target_height == 0 || scaled_height >= target_height)) {
            return n;
        }
    }
    return 8;
}

static int ig_jpeg_decode_failure(const ig_jpeg_decoder *decoder, char *errbuf, size_t errlen) {
    if (decoder->damaged) {
        return ig_fail(
            decoder->error.saw_end_of_data ? IG_ERR_TRUNCATED : IG_ERR_CORRUPT, errbuf, errlen,
            "invalid JPEG: %s", decoder->error.message);
    }
    switch (decoder->error.manager.msg_code) {
    case JERR_BAD_PRECISION:
        return ig_fail(
            IG_ERR_UNSUPPORTED, errbuf, errlen, "%d-bit JPEGs are not supported; only 8-bit samples are",
            decoder->error.manager.msg_parm.i[0]);
    case JERR_NO_BACKING_STORE:
    case JERR_OUT_OF_MEMORY:
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "the JPEG needs more decoder memory than allowed");
    case JERR_CONVERSION_NOTIMPL:
        return ig_fail(IG_ERR_UNSUPPORTED, errbuf, errlen, "unsupported JPEG: %s", decoder->error.message);
    default:
        return ig_fail(ig_jpeg_classify(&decoder->error), errbuf, errlen, "invalid JPEG: %s", decoder->error.message);
    }
}

/* A JPEG decoded row by row: see ig_jpeg_stream_open. */
struct ig_jpeg_stream {
    ig_jpeg_decoder decoder; /* first: cinfo.err points at decoder.error.manager */
    struct jpeg_decompress_struct cinfo;
    ig_stream_info info;
    uint8_t *icc;
    int cmyk;
    int inverted; /* Adobe CMYK: 0 means full ink */
    int raw_cmyk;
    int created;
    int started;
    int finished;
    int failed;
};

void ig_jpeg_stream_close(ig_jpeg_stream *stream) {
    if (stream == NULL) {
        return;
    }
    if (stream->created) {
        jpeg_destroy_decompress(&stream->cinfo);
    }
    free(stream->icc);
    free(stream);
}

int ig_jpeg_stream_open(
    const uint8_t *data, size_t length, const ig_jpeg_options *opts, int raw_cmyk, ig_jpeg_stream **out,
    ig_stream_info *info, char *errbuf, size_t errlen) {
    if (out == NULL || info == NULL || data == NULL || length == 0) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no JPEG data");
    }
    *out = NULL;
    memset(info, 0, sizeof(*info));
    info->orientation = 1;
    if ((uint64_t)length > (uint64_t)(unsigned long)-1) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "JPEG data too long");
    }
    ig_jpeg_options options;
    memset(&options, 0, sizeof(options));
    if (opts != NULL) {
        options = *opts;
    }
    uint32_t max_scans = options.max_scans != 0 ? options.max_scans : IG_JPEG_DEFAULT_MAX_SCANS;
    uint64_t max_memory = options.max_memory != 0 ? options.max_memory : IG_JPEG_DEFAULT_MAX_MEMORY;
    if (max_memory > (uint64_t)LONG_MAX) {
        max_memory = (uint64_t)LONG_MAX;
    }

    /* A progressive stream may repeat scans thousands of times; each one costs a pass over the image. */
    if (ig_jpeg_count_scans(data, length, max_scans) > max_scans) {
        return ig_fail(IG_ERR_TOO_MANY_SCANS, errbuf, errlen, "the JPEG has more than %u scans", max_scans);
    }

    ig_jpeg_stream *const stream = calloc(1, sizeof(ig_jpeg_stream));
    if (stream == NULL) {
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot create the JPEG reader");
    }
    stream->raw_cmyk = raw_cmyk;
    struct jpeg_decompress_struct *const cinfo = &stream->cinfo;
    ig_jpeg_decoder *const decoder = &stream->decoder;
    cinfo->err = jpeg_std_error(&decoder->error.manager);
    decoder->error.manager.error_exit = ig_jpeg_error_exit;
    decoder->error.manager.emit_message = ig_jpeg_decode_emit_message;
    decoder->error.manager.output_message = ig_jpeg_output_message;

    if (setjmp(decoder->error.jump)) {
        int code = ig_jpeg_decode_failure(decoder, errbuf, errlen);
        ig_jpeg_stream_close(stream);
        return code;
    }
    jpeg_create_decompress(cinfo);
    stream->created = 1;
    cinfo->mem->max_memory_to_use = (long)max_memory;
    jpeg_mem_src(cinfo, data, (unsigned long)length);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_save_markers(cinfo, JPEG_APP0 + 2, 0xFFFF);
    (void)jpeg_read_header(cinfo, TRUE);

    int code = IG_OK;
    uint32_t width = cinfo->image_width;
    uint32_t height = cinfo->image_height;
    uint64_t pixels = (uint64_t)width * (uint64_t)height;
    if (cinfo->data_precision != 8) {
        code = ig_fail(
            IG_ERR_UNSUPPORTED, errbuf, errlen, "%d-bit JPEGs are not supported; only 8-bit samples are",
            cinfo->data_precision);
    } else if (width == 0 || height == 0) {
        code = ig_fail(IG_ERR_BAD_DIMENSIONS, errbuf, errlen, "JPEG has a zero width or height");
    } else if ((options.max_width != 0 && width > options.max_width) ||
               (options.max_height != 0 && height > options.max_height) ||
               (options.max_pixels != 0 && pixels > options.max_pixels)) {
        code = ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "JPEG is %ux%u, over the limit", width, height);
    } else if (pixels > (uint64_t)(SIZE_MAX / 4u)) {
        code = ig_fail(IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "JPEG is %ux%u, too large to decode", width, height);
    } else {
        switch (cinfo->jpeg_color_space) {
        case JCS_GRAYSCALE:
        case JCS_YCbCr:
        case JCS_RGB:
            cinfo->out_color_space = JCS_EXT_RGBA; /* libjpeg-turbo writes opaque RGBA directly */
            break;
        case JCS_CMYK:
        case JCS_YCCK:
            cinfo->out_color_space = JCS_CMYK; /* libjpeg turns YCCK into CMYK */
            stream->cmyk = 1;
            break;
        default:
            code = ig_fail(
                IG_ERR_UNSUPPORTED, errbuf, errlen, "unsupported JPEG colour space with %d components",
                cinfo->num_components);
            break;
        }
    }
    if (code != IG_OK) {
        ig_jpeg_stream_close(stream);
        return code;
    }
    stream->inverted = cinfo->saw_Adobe_marker ? 1 : 0;

    JOCTET *icc = NULL;
    unsigned int icc_length = 0;
    if (jpeg_read_icc_profile(cinfo, &icc, &icc_length) && icc != NULL) {
        stream->icc = icc;
    } else {
        icc_length = 0;
    }
    stream->info.width = width;
    stream->info.height = height;
    stream->info.source_width = width;
    stream->info.source_height = height;
    stream->info.orientation = (uint8_t)ig_jpeg_orientation(cinfo);
    stream->info.is_cmyk = (uint8_t)stream->cmyk;
    stream->info.icc = stream->icc;
    stream->info.icc_length = icc_length;
    *info = stream->info;
    *out = stream;
    return IG_OK;
}

int ig_jpeg_stream_start(
    ig_jpeg_stream *stream, uint32_t target_width, uint32_t target_height, ig_stream_info *info, char *errbuf,
    size_t errlen) {
    if (stream == NULL || info == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no JPEG reader");
    }
    if (stream->started || stream->failed) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "the JPEG reader is already started");
    }
    struct jpeg_decompress_struct *const cinfo = &stream->cinfo;
    if (setjmp(stream->decoder.error.jump)) {
        stream->failed = 1;
        return ig_jpeg_decode_failure(&stream->decoder, errbuf, errlen);
    }
    cinfo->scale_num = ig_jpeg_scale_numerator(cinfo->image_width, cinfo->image_height, target_width, target_height);
    cinfo->scale_denom = 8;
    jpeg_calc_output_dimensions(cinfo);
    if (cinfo->output_components != 4 || cinfo->output_width == 0 || cinfo->output_height == 0) {
        stream->failed = 1;
        return ig_fail(IG_ERR_CORRUPT, errbuf, errlen, "unexpected JPEG output layout");
    }
    /* A progressive JPEG is read whole here, every scan. */
    (void)jpeg_start_decompress(cinfo);
    stream->started = 1;
    stream->info.width = cinfo->output_width;
    stream->info.height = cinfo->output_height;
    *info = stream->info;
    return IG_OK;
}

int ig_jpeg_stream_read(ig_jpeg_stream *stream, uint8_t *rows, uint32_t count, char *errbuf, size_t errlen) {
    if (stream == NULL || rows == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no JPEG reader");
    }
    if (!stream->started || stream->failed) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "the JPEG reader is not started or failed");
    }
    struct jpeg_decompress_struct *const cinfo = &stream->cinfo;
    if (count > cinfo->output_height - cinfo->output_scanline) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no more rows");
    }
    if (setjmp(stream->decoder.error.jump)) {
        stream->failed = 1;
        return ig_jpeg_decode_failure(&stream->decoder, errbuf, errlen);
    }
    size_t row_bytes = (size_t)cinfo->output_width * 4u;
    uint32_t done = 0;
    while (done < count) {
        JSAMPROW row_pointers[16];
        uint32_t batch = count - done < 16 ? count - done : 16;
        for (uint32_t i = 0; i < batch; i++) {
            row_pointers[i] = rows + (size_t)(done + i) * row_bytes;
        }
        JDIMENSION read = jpeg_read_scanlines(cinfo, row_pointers, batch);
        if (read == 0) {
            ERREXIT(cinfo, JERR_INPUT_EMPTY);
        }
        done += read;
    }
    if (stream->cmyk) {
        size_t pixels = (size_t)count * cinfo->output_width;
        if (stream->raw_cmyk) {
            if (stream->inverted) {
                for (size_t i = 0; i < pixels * 4u; i++) {
                    rows[i] = (uint8_t)(255u - rows[i]); /* 0 means no ink from here on */
                }
            }
        } else {
            ig_cmyk_to_rgba_in_place(rows, pixels, stream->inverted);
        }
    }
    if (cinfo->output_scanline == cinfo->output_height && !stream->finished) {
        /* Reads through EOI, so damage after the last scan line is caught too. */
        (void)jpeg_finish_decompress(cinfo);
        stream->finished = 1;
    }
    return IG_OK;
}

int ig_jpeg_decode(
    const uint8_t *data, size_t length, const ig_jpeg_options *opts, ig_jpeg_out *out, char *errbuf,
    size_t errlen) {
    if (out == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no JPEG data");
    }
    memset(out, 0, sizeof(*out));
    out->meta.orientation = 1;
    ig_jpeg_stream *stream = NULL;
    ig_stream_info info;
    int code = ig_jpeg_stream_open(data, length, opts, 0, &stream, &info, errbuf, errlen);
    if (code != IG_OK) {
        return code;
    }
    code = ig_jpeg_stream_start(
        stream, opts != NULL ? opts->target_width : 0, opts != NULL ? opts->target_height : 0, &info, errbuf, errlen);
    if (code != IG_OK) {
        ig_jpeg_stream_close(stream);
        return code;
    }
    size_t size = (size_t)info.width * (size_t)info.height * 4u;
    uint8_t *pixels = malloc(size);
    if (pixels == NULL) {
        ig_jpeg_stream_close(stream);
        return ig_fail(IG_ERR_OUT_OF_MEMORY, errbuf, errlen, "cannot allocate a %ux%u image", info.width, info.height);
    }
    code = ig_jpeg_stream_read(stream, pixels, info.height, errbuf, errlen);
    if (code != IG_OK) {
        free(pixels);
        ig_jpeg_stream_close(stream);
        return code;
    }
    out->pixels = pixels;
    out->length = size;
    out->width = info.width;
    out->height = info.height;
    out->source_width = info.source_width;
    out->source_height = info.source_height;
    out->meta.orientation = info.orientation;
    out->meta.is_cmyk = info.is_cmyk;
    /* The profile moves to the caller. */
    out->meta.icc = stream->icc;
    out->meta.icc_length = info.icc_length;
    stream->icc = NULL;
    ig_jpeg_stream_close(stream);
    return IG_OK;
}

/* ---- Encoding --------------------------------------------------------------------------------- */

typedef struct ig_jpeg_encoder {
    ig_jpeg_error error; /* first: cinfo.err points at error.manager */
    unsigned char *buffer;
    unsigned long size;
} ig_jpeg_encoder;

int ig_jpeg_encode_rgb(
    const uint8_t *rgb, uint32_t width, uint32_t height, int quality, ig_buffer *out, char *errbuf,
    size_t errlen) {
    if (out == NULL || rgb == NULL) {
        return ig_fail(IG_ERR_INVALID_ARGUMENT, errbuf, errlen, "no pixels to encode");
    }
    memset(out, 0, sizeof(*out));
    if (width == 0 || height == 0) {
        return ig_fail(IG_ERR_BAD_DIMENSIONS, errbuf, errlen, "cannot encode a %ux%u image", width, height);
    }
    if (width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) {
        return ig_fail(
            IG_ERR_TOO_MANY_PIXELS, errbuf, errlen, "cannot encode a %ux%u image; JPEG allows at most %d per side",
            width, height, (int)JPEG_MAX_DIMENSION);
    }
    quality = quality < 1 ? 1 : (quality > 100 ? 100 : quality);

    struct jpeg_compress_struct cinfo;
    ig_jpeg_encoder state;
    ig_jpeg_encoder *const encoder = &state;
    memset(&cinfo, 0, sizeof(cinfo));
    memset(encoder, 0, sizeof(*encoder));
    cinfo.err = jpeg_std_error(&encoder->error.manager);
    encoder->error.manager.error_exit = ig_jpeg_error_exit;
    encoder->error.manager.emit_message = ig_jpeg_emit_message;
    encoder->error.manager.output_message = ig_jpeg_output_message;

    if (setjmp(encoder->error.jump)) {
        int code = encoder->error.manager.msg_code == JERR_OUT_OF_MEMORY ? IG_ERR_OUT_OF_MEMORY : IG_ERR_INVALID_ARGUMENT;
        jpeg_destroy_compress(&cinfo);
        free(encoder->buffer);
        return ig_fail(code, errbuf, errlen, "JPEG encoding failed: %s", encoder->error.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &encoder->buffer, &encoder->size);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.optimize_coding = TRUE;
    jpeg_start_compress(&cinfo, TRUE);
    size_t row_bytes = (size_t)width * 3u;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(uintptr_t)(rgb + (size_t)cinfo.next_scanline * row_bytes);
        (void)jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);

    out->data = encoder->buffer;
    out->length = (size_t)encoder->size;
    return IG_OK;
}
