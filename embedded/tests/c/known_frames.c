/*
 * Encodes the frames that tests/c_encoder.rs expects, back to back, to
 * stdout, after checking the encoder's error paths. Exits 1 with a message
 * on stderr if any check fails.
 */
#include "weir_frame.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "known_frames.c:%d: check failed: %s\n", __LINE__, \
                    #cond);                                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static void emit(const uint8_t *buf, size_t len) {
    CHECK(len > 0);
    CHECK(fwrite(buf, 1, len, stdout) == len);
}

int main(void) {
    static uint8_t buf[WEIR_MAX_ENCODED_LEN];
    weir_frame f;
    size_t i;

    CHECK(weir_crc32c((const uint8_t *)"123456789", 9) == 0xE3069283u);

    /* 1: small values, no clock. */
    {
        weir_header h = {1, 0, WEIR_CLOCK_NONE, 0};
        CHECK(weir_frame_begin(&f, buf, sizeof buf, &h) == WEIR_OK);
        CHECK(weir_frame_push_i32(&f, 0, -5) == WEIR_OK);
        CHECK(weir_frame_push_u32(&f, 1, 42) == WEIR_OK);
        CHECK(weir_frame_push_f32(&f, 2, 21.5f) == WEIR_OK);
        CHECK(weir_frame_push_bool(&f, 3, true) == WEIR_OK);
        emit(buf, weir_frame_finish(&f));
    }

    /* 2: extremes of every type, Unix clock. */
    {
        static const uint8_t raw[] = {0x00, 0x01, 0x02, 0x00, 0xFF};
        static const char text[] = "h\xC3\xA9llo"; /* "héllo" in UTF-8 */
        weir_header h = {0x0123456789ABCDEFull, 0xFFFFFFFFu, WEIR_CLOCK_UNIX, 1700000000123456ull};
        CHECK(weir_frame_begin(&f, buf, sizeof buf, &h) == WEIR_OK);
        CHECK(weir_frame_push_i64(&f, 300, INT64_MIN) == WEIR_OK);
        CHECK(weir_frame_push_u64(&f, 65535, UINT64_MAX) == WEIR_OK);
        CHECK(weir_frame_push_f64(&f, 7, -0.125) == WEIR_OK);
        CHECK(weir_frame_push_bool(&f, 8, false) == WEIR_OK);
        CHECK(weir_frame_push_bytes(&f, 9, raw, sizeof raw) == WEIR_OK);
        CHECK(weir_frame_push_str(&f, 10, text, strlen(text)) == WEIR_OK);
        CHECK(weir_frame_push_i32(&f, 11, INT32_MIN) == WEIR_OK);
        emit(buf, weir_frame_finish(&f));
    }

    /* 3: no readings, uptime clock. */
    {
        weir_header h = {7, 1, WEIR_CLOCK_UPTIME, 123};
        CHECK(weir_frame_begin(&f, buf, sizeof buf, &h) == WEIR_OK);
        emit(buf, weir_frame_finish(&f));
    }

    /* 4: a 300-byte run without zeros (COBS blocks of 254), a NaN's bits. */
    {
        uint8_t run[300];
        uint32_t nan_bits = 0x7FC00001u;
        float nan;
        weir_header h = {2, 3, WEIR_CLOCK_NONE, 0};
        for (i = 0; i < sizeof run; i++) {
            run[i] = (uint8_t)(i % 255u + 1u);
        }
        memcpy(&nan, &nan_bits, sizeof nan);
        CHECK(weir_frame_begin(&f, buf, sizeof buf, &h) == WEIR_OK);
        CHECK(weir_frame_push_bytes(&f, 1, run, sizeof run) == WEIR_OK);
        CHECK(weir_frame_push_i32(&f, 2, INT32_MAX) == WEIR_OK);
        CHECK(weir_frame_push_f32(&f, 3, nan) == WEIR_OK);
        emit(buf, weir_frame_finish(&f));
    }

    /* 5: a 40-byte buffer filled until it refuses; the frame so far is sent. */
    {
        uint8_t small[40];
        weir_header h = {5, 9, WEIR_CLOCK_NONE, 0};
        weir_status s = WEIR_OK;
        CHECK(weir_frame_begin(&f, small, sizeof small, &h) == WEIR_OK);
        for (i = 0; s == WEIR_OK; i++) {
            s = weir_frame_push_u32(&f, (uint16_t)i, (uint32_t)(i * 1000u));
        }
        CHECK(s == WEIR_ERR_BUFFER_TOO_SMALL);
        CHECK(f.needed > sizeof small);
        emit(small, weir_frame_finish(&f));
        CHECK(weir_frame_finish(&f) == 0);
        CHECK(weir_frame_push_bool(&f, 0, true) == WEIR_ERR_BAD_ARGUMENT);
    }

    /* Error paths that produce no frame. */
    {
        uint8_t tiny[4];
        weir_header h = {1, 0, WEIR_CLOCK_NONE, 0};
        weir_header bad_clock = {1, 0, (weir_clock)3, 0};
        static uint8_t big[2 * WEIR_MAX_ENCODED_LEN];
        static const uint8_t huge[WEIR_MAX_FRAME_LEN] = {0};
        CHECK(weir_frame_begin(&f, tiny, sizeof tiny, &h) == WEIR_ERR_BUFFER_TOO_SMALL);
        CHECK(weir_frame_push_bool(&f, 0, true) == WEIR_ERR_BAD_ARGUMENT);
        CHECK(weir_frame_begin(&f, buf, sizeof buf, &bad_clock) == WEIR_ERR_BAD_ARGUMENT);
        CHECK(weir_frame_begin(&f, buf, sizeof buf, &h) == WEIR_OK);
        for (i = 0; i < WEIR_MAX_READINGS; i++) {
            CHECK(weir_frame_push_bool(&f, 0, true) == WEIR_OK);
        }
        CHECK(weir_frame_push_bool(&f, 0, true) == WEIR_ERR_TOO_MANY_READINGS);
        CHECK(weir_frame_begin(&f, big, sizeof big, &h) == WEIR_OK);
        CHECK(weir_frame_push_bytes(&f, 0, huge, sizeof huge) == WEIR_ERR_FRAME_TOO_LONG);
        CHECK(weir_frame_push_bytes(&f, 0, NULL, 1) == WEIR_ERR_BAD_ARGUMENT);
    }

    if (fflush(stdout) != 0) {
        failures++;
    }
    return failures == 0 ? 0 : 1;
}
