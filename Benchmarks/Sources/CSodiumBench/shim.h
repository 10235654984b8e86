#ifndef SIGIL_BENCH_SODIUM_H
#define SIGIL_BENCH_SODIUM_H
#include <sodium.h>
#endif
