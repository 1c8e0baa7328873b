// Which instruction-set copies of the CPU kernels this build carries.
#pragma once

// Set by CMakeLists.txt when the AVX2 and AVX-512 copies are compiled in (x86-64, GCC or Clang).
#if defined(QKF_X86_DISPATCH)
#define QKF_X86 1
#else
#define QKF_X86 0
#endif

namespace qkan_fast {
// "avx512", "avx2" or "generic": the copy the CPU kernels run (QKAN_FAST_ISA can lower it).
const char* cpu_isa();
}  // namespace qkan_fast
