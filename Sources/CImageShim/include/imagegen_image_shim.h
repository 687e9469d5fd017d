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
    IG_ERR_INVALID_ARGUMENT = 7,
    /* A JPEG declares more scans (SOS markers) than the caller allows. */
    IG_ERR_TOO_MANY_SCANS = 8
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

/* How PNG output is compressed. */
typedef enum ig_png_strategy {
    /* Per image: run-length coding when a sample says it is as small as deflate (photos), else deflate. */
    IG_PNG_STRATEGY_AUTOMATIC = 0,
    /* zlib's Z_RLE over Paeth-filtered rows: fast, small for photographs. */
    IG_PNG_STRATEGY_RLE = 1,
    /* Full deflate at `level` over adaptively filtered rows: smallest for screenshots and flat art. */
    IG_PNG_STRATEGY_DEFLATE = 2
} ig_png_strategy;

typedef struct ig_png_encode_options {
    int level;    /* zlib level 0-9; 0 stores the rows uncompressed and unfiltered */
    int strategy; /* an ig_png_strategy */
    int threads;  /* 2 compresses the two halves of a large image at once; 0 or 1 one thread */
} ig_png_encode_options;

/*
 * Encodes `width * height` RGBA8 pixels as PNG. With has_alpha == 0 the alpha channel is dropped
 * and an RGB PNG is written. `opts` NULL means level 6, automatic strategy, one thread. The output
 * carries no metadata: only IHDR, IDAT and IEND. libpng writes the signature, the header and the
 * chunks; the rows are filtered here (Paeth for run-length coding, libpng's adaptive heuristic for
 * deflate) and compressed with zlib in one or two bands, concatenated into one zlib stream.
 */
int ig_png_encode_rgba(
    const uint8_t *rgba, uint32_t width, uint32_t height, int has_alpha, const ig_png_encode_options *opts,
    ig_buffer *out, char *errbuf, size_t errlen);

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

/* Metadata returned next to decoded pixels. */
typedef struct ig_image_meta {
    /* The embedded ICC profile, or NULL. malloc'd; release with ig_free. */
    uint8_t *icc;
    size_t icc_length;
    /* EXIF orientation 1-8; 1 when there is no EXIF data or it is unreadable. */
    uint8_t orientation;
    /* JPEG: the source was CMYK or YCCK (so `icc`, if any, is a CMYK profile). 0 for PNG. */
    uint8_t is_cmyk;
} ig_image_meta;

/*
 * Same as ig_png_decode_rgba, and fills `meta` (which may be NULL) with the iCCP profile and the
 * orientation of an eXIf chunk. Pixels are identical to those of ig_png_decode_rgba. On failure
 * nothing is left allocated in `out` or `meta`.
 */
int ig_png_decode_rgba_meta(
    const uint8_t *data, size_t length, uint32_t max_width, uint32_t max_height, uint64_t max_pixels,
    ig_image_out *out, ig_image_meta *meta, char *errbuf, size_t errlen);

/* What a row-by-row decoder knows once it is open. */
typedef struct ig_stream_info {
    /* The size of the rows it returns (after shrink-on-load for a started JPEG stream). */
    uint32_t width;
    uint32_t height;
    /* The size declared by the file. */
    uint32_t source_width;
    uint32_t source_height;
    /* EXIF orientation 1-8; 1 without EXIF data (JPEG APP1, PNG eXIf anywhere before IEND). */
    uint8_t orientation;
    /* JPEG only: the source is CMYK or YCCK. */
    uint8_t is_cmyk;
    /* The embedded ICC profile or NULL; owned by the stream, valid until it is closed. */
    const uint8_t *icc;
    size_t icc_length;
} ig_stream_info;

/*
 * A PNG decoded row by row to RGBA8, with the conversions and checks of ig_png_decode_rgba, so a
 * caller can resize while decoding and never hold the full-size image. Interlaced images are decoded
 * whole at open (Adam7 needs every pass). After a failed read the stream can only be closed.
 */
typedef struct ig_png_stream ig_png_stream;

/* Reads the headers, applies the limits and prepares decoding. On success `*out` must be closed. */
int ig_png_stream_open(
    const uint8_t *data, size_t length, uint32_t max_width, uint32_t max_height, uint64_t max_pixels,
    ig_png_stream **out, ig_stream_info *info, char *errbuf, size_t errlen);

/*
 * Decodes the next `count` rows into `rows` (count * width * 4 bytes). The read that returns the last
 * row also reads through IEND, so damage after the image data is reported there.
 */
int ig_png_stream_read(ig_png_stream *stream, uint8_t *rows, uint32_t count, char *errbuf, size_t errlen);

void ig_png_stream_close(ig_png_stream *stream);

/* Limits and shrink-on-load request for ig_jpeg_decode. Zero-initialise, then set what you need. */
typedef struct ig_jpeg_options {
    /* Size limits on the source image, checked after the headers, before any scan is decoded; 0 = none. */
    uint32_t max_width;
    uint32_t max_height;
    uint64_t max_pixels;
    /* Most SOS markers allowed, counted by walking the markers before decoding; 0 = 64. */
    uint32_t max_scans;
    /* libjpeg working-memory cap in bytes (cinfo.mem->max_memory_to_use); 0 = 512 MB. */
    uint64_t max_memory;
    /*
     * Shrink-on-load: the decoder's DCT scaling (1/8 to 8/8) picks the smallest output that is
     * still at least this wide and tall. 0 leaves that dimension unconstrained; both 0 = full size.
     */
    uint32_t target_width;
    uint32_t target_height;
} ig_jpeg_options;

/* A decoded JPEG: `width * height` opaque RGBA8 pixels, rows top to bottom, no padding. */
typedef struct ig_jpeg_out {
    uint8_t *pixels; /* malloc'd; release with ig_free */
    size_t length;   /* width * height * 4 */
    uint32_t width;  /* after shrink-on-load */
    uint32_t height;
    uint32_t source_width; /* as declared by the frame header */
    uint32_t source_height;
    ig_image_meta meta;
} ig_jpeg_out;

/*
 * Decodes an 8-bit JPEG (baseline, extended, progressive, Huffman or arithmetic) to RGBA8. Grey,
 * YCbCr and RGB are converted by libjpeg; CMYK and YCCK are converted here (Adobe-inverted when the
 * stream has an Adobe APP14 marker). Also returns the EXIF orientation (APP1) and the ICC profile
 * (APP2 ICC_PROFILE). Nothing is printed; libjpeg warnings that mean damaged data are errors.
 *
 * Returns IG_ERR_TOO_MANY_SCANS before decoding when the marker walk finds more than max_scans
 * scans, IG_ERR_TOO_MANY_PIXELS / IG_ERR_BAD_DIMENSIONS for the size limits, IG_ERR_UNSUPPORTED for
 * a precision other than 8 bits or an unknown colour space, IG_ERR_TRUNCATED when the data ends
 * early, IG_ERR_OUT_OF_MEMORY when the memory cap is hit and IG_ERR_CORRUPT otherwise. On failure
 * nothing is left allocated in `out`. `opts` may be NULL (defaults).
 */
int ig_jpeg_decode(
    const uint8_t *data, size_t length, const ig_jpeg_options *opts, ig_jpeg_out *out, char *errbuf,
    size_t errlen);

/*
 * A JPEG decoded row by row, with the checks and conversions of ig_jpeg_decode: open reads the
 * headers (limits, scan count, colour space, EXIF orientation, ICC profile), start picks the DCT
 * scale and starts decompressing, read returns rows. After a failure the stream can only be closed.
 */
typedef struct ig_jpeg_stream ig_jpeg_stream;

/*
 * `opts` gives the limits (its targets are ignored: see start). With raw_cmyk != 0 a CMYK or YCCK
 * JPEG returns CMYK8 rows (0 = no ink, Adobe inversion undone) for the caller to colour-manage;
 * otherwise such rows are converted with the naive formula (R = (255 - C) * (255 - K) / 255).
 */
int ig_jpeg_stream_open(
    const uint8_t *data, size_t length, const ig_jpeg_options *opts, int raw_cmyk, ig_jpeg_stream **out,
    ig_stream_info *info, char *errbuf, size_t errlen);

/* Shrink-on-load as in ig_jpeg_options (0, 0 = full size); updates info's width and height. */
int ig_jpeg_stream_start(
    ig_jpeg_stream *stream, uint32_t target_width, uint32_t target_height, ig_stream_info *info, char *errbuf,
    size_t errlen);

/*
 * Decodes the next `count` rows into `rows` (count * width * 4 bytes). The read that returns the last
 * row also reads through EOI.
 */
int ig_jpeg_stream_read(ig_jpeg_stream *stream, uint8_t *rows, uint32_t count, char *errbuf, size_t errlen);

void ig_jpeg_stream_close(ig_jpeg_stream *stream);

/*
 * Encodes `width * height` RGB8 pixels as a baseline JPEG (4:2:0, optimized Huffman tables,
 * quality 1-100, clamped). Writes a JFIF header and no other metadata.
 */
int ig_jpeg_encode_rgb(
    const uint8_t *rgb, uint32_t width, uint32_t height, int quality, ig_buffer *out, char *errbuf,
    size_t errlen);


/*
 * Reads the orientation tag (0x0112) of IFD0 of an EXIF TIFF structure ("II*\0" or "MM\0*"
 * header; a leading "Exif\0\0" is skipped). Returns 1-8, or 1 when the tag is missing, out of
 * range or any offset points outside the data.
 */
int ig_exif_orientation(const uint8_t *data, size_t length);

#ifdef __cplusplus
}
#endif

#endif /* IMAGEGEN_IMAGE_SHIM_H */
