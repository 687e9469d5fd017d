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
