#ifndef SIGIL_CLIBUV_SHIM_H
#define SIGIL_CLIBUV_SHIM_H
#include <uv.h>
#endif
