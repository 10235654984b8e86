#ifndef SIGIL_CSODIUMSHIMS_H
#define SIGIL_CSODIUMSHIMS_H

#include <stddef.h>

/*
 * libsodium takes `unsigned char *`, which Swift imports as a typed
 * UnsafePointer<UInt8>. Binding guarded key memory or caller buffers to a
 * type just to call C would be wrong (and noisy), so these wrappers take
 * `void *` and cast in C, where the aliasing rules allow it.
 */

/* Returns 0 on success. `sig` receives crypto_sign_BYTES (64). */
int CSodiumShims_sign_detached(void *sig, const void *m, size_t mlen, const void *sk);

/* Returns 0 when the signature is valid, -1 otherwise. */
int CSodiumShims_verify_detached(const void *sig, const void *m, size_t mlen, const void *pk);

/* Derives (pk, sk) from a 32-byte seed. Returns 0 on success. */
int CSodiumShims_seed_keypair(void *pk, void *sk, const void *seed);

/* Fills `buf` with `len` random bytes. */
void CSodiumShims_randombytes(void *buf, size_t len);

/* A uniformly random integer in [0, upper). */
unsigned int CSodiumShims_uniform(unsigned int upper);

/* SHA-256 of `m` into `out` (32 bytes). Returns 0 on success. */
int CSodiumShims_sha256(void *out, const void *m, size_t mlen);

/* Constant-time comparison; 0 when equal. */
int CSodiumShims_memcmp(const void *a, const void *b, size_t len);

/*
 * Starts loading the cache line at `p` for reading, and returns at once. A hint only: it never
 * faults, whatever `p` is. The request path uses it to fetch a server's key while it lays out
 * the message, so that two cache misses do not wait one after the other.
 */
static inline void CSodiumShims_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

#endif
