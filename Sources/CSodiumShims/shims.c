#include "CSodiumShims.h"
#include <sodium.h>

int CSodiumShims_sign_detached(void *sig, const void *m, size_t mlen, const void *sk) {
    return crypto_sign_detached((unsigned char *)sig, NULL, (const unsigned char *)m,
                                (unsigned long long)mlen, (const unsigned char *)sk);
}

int CSodiumShims_verify_detached(const void *sig, const void *m, size_t mlen, const void *pk) {
    return crypto_sign_verify_detached((const unsigned char *)sig, (const unsigned char *)m,
                                       (unsigned long long)mlen, (const unsigned char *)pk);
}

int CSodiumShims_seed_keypair(void *pk, void *sk, const void *seed) {
    return crypto_sign_seed_keypair((unsigned char *)pk, (unsigned char *)sk,
                                    (const unsigned char *)seed);
}

void CSodiumShims_randombytes(void *buf, size_t len) {
    randombytes_buf(buf, len);
}

int CSodiumShims_sha256(void *out, const void *m, size_t mlen) {
    return crypto_hash_sha256((unsigned char *)out, (const unsigned char *)m,
                              (unsigned long long)mlen);
}

int CSodiumShims_memcmp(const void *a, const void *b, size_t len) {
    return sodium_memcmp(a, b, len);
}

unsigned int CSodiumShims_uniform(unsigned int upper) {
    return (unsigned int)randombytes_uniform((uint32_t)upper);
}
