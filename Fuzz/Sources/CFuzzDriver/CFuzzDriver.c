// Nothing to define: the module exists to declare LLVMFuzzerRunDriver to Swift.
#include "CFuzzDriver.h"
