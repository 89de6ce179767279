/*
 * Weir device frame encoder for C firmware (C99, no malloc, no globals
 * written, reentrant).
 *
 * Builds one frame in a buffer you provide, reading by reading, and
 * produces the exact bytes the Rust crate `weir-embedded` produces:
 *
 *     0x00 | COBS(body | CRC-32C(body)) | 0x00
 *
 * The format is described byte by byte in docs/frame-format.md.
 *
 *     uint8_t buf[WEIR_MAX_ENCODED_LEN];   // or smaller: see weir_frame_begin
 *     weir_frame f;
 *     weir_header h = { .device_id = 42, .sequence = seq++,
 *                       .clock = WEIR_CLOCK_NONE, .time_us = 0 };
 *     if (weir_frame_begin(&f, buf, sizeof buf, &h) == WEIR_OK) {
 *         weir_frame_push_f32(&f, 0, 21.5f);
 *         weir_frame_push_u32(&f, 1, 1013);
 *         size_t len = weir_frame_finish(&f);
 *         uart_write(buf, len);
 *     }
 *
 * A push that fails leaves the frame as it was: finish it, send it, and
 * push the rejected reading into the next frame.
 *
 * Floats are written by copying their bits, so the target must use IEEE 754
 * binary32/binary64 for float/double (every common MCU toolchain does; on
 * AVR, where double is 32 bits, use weir_frame_push_f32).
 */
#ifndef WEIR_FRAME_H
#define WEIR_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version byte written into every frame. */
#define WEIR_FRAME_VERSION 1u
/* Largest frame before stuffing (body and CRC). */
#define WEIR_MAX_FRAME_LEN 1024u
/* Wire size, delimiters included, of a frame whose body and CRC are n bytes,
 * in the worst case of stuffing. */
#define WEIR_MAX_ENCODED_LEN_OF(n) ((n) + 3u + (n) / 254u)
/* A buffer of this many bytes holds any frame. */
#define WEIR_MAX_ENCODED_LEN WEIR_MAX_ENCODED_LEN_OF(WEIR_MAX_FRAME_LEN)
/* Most readings in one frame. */
#define WEIR_MAX_READINGS 255u

/* Which clock a frame's timestamp comes from. */
typedef enum {
    WEIR_CLOCK_NONE = 0,   /* no clock: time_us is ignored and not sent */
    WEIR_CLOCK_UNIX = 1,   /* microseconds since 1970-01-01T00:00:00Z */
    WEIR_CLOCK_UPTIME = 2  /* microseconds since the device booted */
} weir_clock;

typedef enum {
    WEIR_OK = 0,
    /* The buffer cannot hold the frame with this addition; `needed` in the
     * weir_frame says how large a buffer would. */
    WEIR_ERR_BUFFER_TOO_SMALL = 1,
    /* The frame would exceed WEIR_MAX_FRAME_LEN. */
    WEIR_ERR_FRAME_TOO_LONG = 2,
    /* The frame already holds WEIR_MAX_READINGS readings. */
    WEIR_ERR_TOO_MANY_READINGS = 3,
    /* A NULL pointer, an unknown clock, or a frame already finished. */
    WEIR_ERR_BAD_ARGUMENT = 4
} weir_status;

typedef struct {
    uint64_t device_id; /* who sends: any 64-bit id, e.g. a MAC or chip id */
    uint32_t sequence;  /* +1 per frame per device, wrapping */
    weir_clock clock;
    uint64_t time_us;   /* when the readings were taken, by `clock` */
} weir_header;

/* A frame being built. Treat the fields as private, except `needed`. */
typedef struct {
    uint8_t *buf;      /* NULL once finished */
    size_t cap;
    size_t gap;        /* body starts here: room to stuff in place */
    size_t pos;        /* end of the body so far */
    size_t body_limit; /* the body may not pass this */
    size_t count_at;   /* where the reading count byte is */
    uint8_t count;
    size_t needed;     /* after WEIR_ERR_BUFFER_TOO_SMALL: buffer size needed */
} weir_frame;

/* Starts a frame in buf[0..cap) and writes the header. */
weir_status weir_frame_begin(weir_frame *f, uint8_t *buf, size_t cap, const weir_header *h);

weir_status weir_frame_push_bool(weir_frame *f, uint16_t channel, bool value);
weir_status weir_frame_push_u32(weir_frame *f, uint16_t channel, uint32_t value);
weir_status weir_frame_push_u64(weir_frame *f, uint16_t channel, uint64_t value);
weir_status weir_frame_push_i32(weir_frame *f, uint16_t channel, int32_t value);
weir_status weir_frame_push_i64(weir_frame *f, uint16_t channel, int64_t value);
weir_status weir_frame_push_f32(weir_frame *f, uint16_t channel, float value);
weir_status weir_frame_push_f64(weir_frame *f, uint16_t channel, double value);
weir_status weir_frame_push_bytes(weir_frame *f, uint16_t channel, const uint8_t *data, size_t len);
/* `text` must be UTF-8 (the receiver rejects the frame otherwise); `len`
 * bytes, no terminating NUL needed. */
weir_status weir_frame_push_str(weir_frame *f, uint16_t channel, const char *text, size_t len);

/* Appends the CRC and stuffs the frame. Returns its length: send buf[0..len).
 * Returns 0 for a frame that was never begun or is already finished. */
size_t weir_frame_finish(weir_frame *f);

/* CRC-32C (Castagnoli) of data[0..len); weir_crc32c("123456789", 9) is
 * 0xE3069283. */
uint32_t weir_crc32c(const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* WEIR_FRAME_H */
