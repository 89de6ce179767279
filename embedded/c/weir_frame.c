/*
 * Weir device frame encoder; see weir_frame.h and docs/frame-format.md.
 *
 * Mirrors embedded/src/encode.rs step for step, so the two produce the same
 * bytes (a Rust test compiles this file and compares): the body is written
 * at an offset (the gap) in the caller's buffer and stuffed forward into the
 * gap in place at the end, so no second buffer is needed.
 */
#include "weir_frame.h"

#include <string.h>

#define CRC_LEN 4u

/* Value tags. */
enum {
    TAG_FALSE = 0x01,
    TAG_TRUE = 0x02,
    TAG_U32 = 0x03,
    TAG_U64 = 0x04,
    TAG_I32 = 0x05,
    TAG_I64 = 0x06,
    TAG_F32 = 0x07,
    TAG_F64 = 0x08,
    TAG_BYTES = 0x09,
    TAG_STR = 0x0A
};

/* CRC-32C a nibble at a time: 64 bytes of table instead of 1 KiB. */
static const uint32_t crc_table[16] = {
    0x00000000u, 0x105EC76Fu, 0x20BD8EDEu, 0x30E349B1u, 0x417B1DBCu, 0x5125DAD3u,
    0x61C69362u, 0x7198540Du, 0x82F63B78u, 0x92A8FC17u, 0xA24BB5A6u, 0xB21572C9u,
    0xC38D26C4u, 0xD3D3E1ABu, 0xE330A81Au, 0xF36E6F75u,
};

uint32_t weir_crc32c(const uint8_t *data, size_t len) {
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_table[crc & 0xFu];
        crc = (crc >> 4) ^ crc_table[crc & 0xFu];
    }
    return ~crc;
}

/* Writes while there is room and counts on regardless, so one comparison
 * afterwards says whether everything fitted and how much room it needed. */
typedef struct {
    uint8_t *buf;
    size_t limit;
    size_t pos;
} writer;

static void put(writer *w, uint8_t b) {
    if (w->pos < w->limit) {
        w->buf[w->pos] = b;
    }
    w->pos++;
}

static void put_bytes(writer *w, const uint8_t *data, size_t len) {
    if (len > WEIR_MAX_FRAME_LEN) {
        /* Cannot fit any frame; advance far enough to say so without letting
         * a huge len wrap the position around. */
        w->pos += WEIR_MAX_FRAME_LEN + 1u;
        return;
    }
    if (w->pos <= w->limit && len <= w->limit - w->pos && len > 0) {
        memcpy(w->buf + w->pos, data, len);
    }
    w->pos += len;
}

/* LEB128: 7 bits per byte, low group first, high bit = more follows. */
static void put_varint(writer *w, uint64_t v) {
    while (v >= 0x80u) {
        put(w, (uint8_t)(v | 0x80u));
        v >>= 7;
    }
    put(w, (uint8_t)v);
}

static void put_le(writer *w, uint64_t v, unsigned bytes) {
    unsigned i;
    for (i = 0; i < bytes; i++) {
        put(w, (uint8_t)(v >> (8u * i)));
    }
}

/* 0, -1, 1, -2 ... -> 0, 1, 2, 3 ...; written without shifting a negative
 * number, which C leaves implementation-defined. */
static uint64_t zigzag(int64_t v) {
    uint64_t u = (uint64_t)v;
    return v < 0 ? ~(u << 1) : (u << 1);
}

/* The smallest gap that keeps stuffing in place safe for any body that fits
 * `cap` bytes (see gap_for in encode.rs). */
static size_t gap_for(size_t cap) {
    size_t gap = 2;
    for (;;) {
        size_t n = cap > gap + 1 ? cap - gap - 1 : 0;
        if (n > WEIR_MAX_FRAME_LEN) {
            n = WEIR_MAX_FRAME_LEN;
        }
        if (n / 254u <= gap - 2) {
            return gap;
        }
        gap++;
    }
}

/* Turns a write that did not fit into the right error. */
static weir_status too_big(weir_frame *f, size_t body_len) {
    size_t n = body_len + CRC_LEN;
    if (n > WEIR_MAX_FRAME_LEN) {
        return WEIR_ERR_FRAME_TOO_LONG;
    }
    f->needed = WEIR_MAX_ENCODED_LEN_OF(n);
    return WEIR_ERR_BUFFER_TOO_SMALL;
}

weir_status weir_frame_begin(weir_frame *f, uint8_t *buf, size_t cap, const weir_header *h) {
    writer w;
    size_t limit;
    uint8_t flags;
    if (f == NULL || buf == NULL || h == NULL) {
        return WEIR_ERR_BAD_ARGUMENT;
    }
    switch (h->clock) {
    case WEIR_CLOCK_NONE: flags = 0; break;
    case WEIR_CLOCK_UNIX: flags = 1; break;
    case WEIR_CLOCK_UPTIME: flags = 2; break;
    default: return WEIR_ERR_BAD_ARGUMENT;
    }
    memset(f, 0, sizeof *f);
    f->cap = cap;
    f->gap = gap_for(cap);
    limit = cap > 0 ? cap - 1 : 0;
    if (limit > f->gap + WEIR_MAX_FRAME_LEN) {
        limit = f->gap + WEIR_MAX_FRAME_LEN;
    }
    f->body_limit = limit > CRC_LEN ? limit - CRC_LEN : 0;

    w.buf = buf;
    w.limit = f->body_limit;
    w.pos = f->gap;
    put(&w, WEIR_FRAME_VERSION);
    put(&w, flags);
    put_varint(&w, h->device_id);
    put_varint(&w, h->sequence);
    if (h->clock != WEIR_CLOCK_NONE) {
        put_varint(&w, h->time_us);
    }
    f->count_at = w.pos;
    put(&w, 0); /* reading count, patched on every push */
    if (w.pos > f->body_limit) {
        return too_big(f, w.pos - f->gap);
    }
    f->buf = buf;
    f->pos = w.pos;
    return WEIR_OK;
}

/* Opens a reading: checks the frame, writes channel and tag. */
static weir_status open_reading(weir_frame *f, writer *w, uint16_t channel, uint8_t tag) {
    if (f == NULL || f->buf == NULL) {
        return WEIR_ERR_BAD_ARGUMENT;
    }
    if (f->count >= WEIR_MAX_READINGS) {
        return WEIR_ERR_TOO_MANY_READINGS;
    }
    w->buf = f->buf;
    w->limit = f->body_limit;
    w->pos = f->pos;
    put_varint(w, channel);
    put(w, tag);
    return WEIR_OK;
}

/* Keeps the reading if it fitted; otherwise the frame stays as it was. */
static weir_status close_reading(weir_frame *f, const writer *w) {
    if (w->pos > f->body_limit) {
        return too_big(f, w->pos - f->gap);
    }
    f->pos = w->pos;
    f->count++;
    f->buf[f->count_at] = f->count;
    return WEIR_OK;
}

weir_status weir_frame_push_bool(weir_frame *f, uint16_t channel, bool value) {
    writer w;
    weir_status s = open_reading(f, &w, channel, value ? TAG_TRUE : TAG_FALSE);
    return s != WEIR_OK ? s : close_reading(f, &w);
}

weir_status weir_frame_push_u32(weir_frame *f, uint16_t channel, uint32_t value) {
    writer w;
    weir_status s = open_reading(f, &w, channel, TAG_U32);
    if (s != WEIR_OK) {
        return s;
    }
    put_varint(&w, value);
    return close_reading(f, &w);
}

weir_status weir_frame_push_u64(weir_frame *f, uint16_t channel, uint64_t value) {
    writer w;
    weir_status s = open_reading(f, &w, channel, TAG_U64);
    if (s != WEIR_OK) {
        return s;
    }
    put_varint(&w, value);
    return close_reading(f, &w);
}

weir_status weir_frame_push_i32(weir_frame *f, uint16_t channel, int32_t value) {
    writer w;
    weir_status s = open_reading(f, &w, channel, TAG_I32);
    if (s != WEIR_OK) {
        return s;
    }
    put_varint(&w, zigzag(value));
    return close_reading(f, &w);
}

weir_status weir_frame_push_i64(weir_frame *f, uint16_t channel, int64_t value) {
    writer w;
    weir_status s = open_reading(f, &w, channel, TAG_I64);
    if (s != WEIR_OK) {
        return s;
    }
    put_varint(&w, zigzag(value));
    return close_reading(f, &w);
}

weir_status weir_frame_push_f32(weir_frame *f, uint16_t channel, float value) {
    writer w;
    uint32_t bits;
    weir_status s = open_reading(f, &w, channel, TAG_F32);
    if (s != WEIR_OK) {
        return s;
    }
    memcpy(&bits, &value, sizeof bits);
    put_le(&w, bits, 4);
    return close_reading(f, &w);
}

weir_status weir_frame_push_f64(weir_frame *f, uint16_t channel, double value) {
    writer w;
    uint64_t bits;
    weir_status s = open_reading(f, &w, channel, TAG_F64);
    if (s != WEIR_OK) {
        return s;
    }
    memcpy(&bits, &value, sizeof bits);
    put_le(&w, bits, 8);
    return close_reading(f, &w);
}

static weir_status push_len_prefixed(weir_frame *f, uint16_t channel, uint8_t tag,
                                     const uint8_t *data, size_t len) {
    writer w;
    weir_status s;
    if (data == NULL && len > 0) {
        return WEIR_ERR_BAD_ARGUMENT;
    }
    s = open_reading(f, &w, channel, tag);
    if (s != WEIR_OK) {
        return s;
    }
    put_varint(&w, len);
    put_bytes(&w, data, len);
    return close_reading(f, &w);
}

weir_status weir_frame_push_bytes(weir_frame *f, uint16_t channel, const uint8_t *data, size_t len) {
    return push_len_prefixed(f, channel, TAG_BYTES, data, len);
}

weir_status weir_frame_push_str(weir_frame *f, uint16_t channel, const char *text, size_t len) {
    return push_len_prefixed(f, channel, TAG_STR, (const uint8_t *)text, len);
}

/* COBS-stuffs buf[src..src+len) into buf[dst..), in place; the caller
 * guarantees dst + 1 + len / 254 <= src, so output never overtakes input. */
static size_t stuff_in_place(uint8_t *buf, size_t src, size_t len, size_t dst) {
    size_t code_at = dst;
    size_t out = dst + 1;
    uint8_t code = 1;
    size_t i;
    for (i = src; i < src + len; i++) {
        uint8_t b = buf[i];
        if (b == 0) {
            buf[code_at] = code;
            code_at = out++;
            code = 1;
        } else {
            buf[out++] = b;
            code++;
            if (code == 0xFF) {
                buf[code_at] = code;
                code_at = out++;
                code = 1;
            }
        }
    }
    buf[code_at] = code;
    return out - dst;
}

size_t weir_frame_finish(weir_frame *f) {
    uint32_t crc;
    writer w;
    size_t stuffed;
    if (f == NULL || f->buf == NULL) {
        return 0;
    }
    crc = weir_crc32c(f->buf + f->gap, f->pos - f->gap);
    w.buf = f->buf;
    w.limit = f->cap;
    w.pos = f->pos;
    put_le(&w, crc, 4);
    stuffed = stuff_in_place(f->buf, f->gap, w.pos - f->gap, 1);
    f->buf[0] = 0;
    f->buf[stuffed + 1] = 0;
    f->buf = NULL;
    return stuffed + 2;
}
