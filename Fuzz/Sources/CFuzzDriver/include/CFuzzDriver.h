#ifndef SIGIL_CFUZZDRIVER_H
#define SIGIL_CFUZZDRIVER_H

#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry point for programs that keep their own main (compiler-rt's FuzzerDriver.cpp);
// linked in by -sanitize=fuzzer. It parses libFuzzer's flags from argv and calls UserCb per input.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
