/* Fuzz target: the channel's message decoder, which the host runs on every
 * request slot the enclave writes and the enclave on every reply. Input: 8
 * bytes of arena size, then the slot. */
#include <stdint.h>

#include "boundary/channel.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t arena;
    memcpy(&arena, data, 8);
    arena %= (uint64_t)1 << 42;
    data += 8, size -= 8;
    /* The slot as the other side left it, in a buffer of exactly its size,
     * so that any read past it is caught. */
    uint8_t *s = malloc(size ? size : 1);
    memcpy(s, data, size);
    am_msg m;
    am_status st = am_chan_decode_request(s, size, arena, &m);
    fuzz_check_failure(st);
    if (st == AM_OK && m.kind == AM_MSG_CONV) {
        /* Every buffer a valid request names lies in the arena. */
        if (m.off_in0 >= arena || m.off_in1 >= arena || m.off_out >= arena) abort();
        am_shape y;
        if (am_conv2d_out_shape(&m.cfg, m.x, &y) != AM_OK) abort();
    }
    fuzz_check_failure(am_chan_decode_reply(s, size, &m));
    /* A reply's words are one line of printable ASCII, whatever the bytes. */
    for (size_t i = 0; m.err[i]; i++)
        if (i >= sizeof m.err - 1 || m.err[i] < 0x20 || m.err[i] > 0x7e) abort();
    free(s);
    return 0;
}
