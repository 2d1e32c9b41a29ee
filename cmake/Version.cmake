# Version, compiler and flags are baked into a generated header so every result can name its
# build; the git commit is stamped at build time instead (cmake/GitCommit.cmake, compiled into
# qeval_util), since it changes without a reconfigure.
set(QEVAL_COMPILER "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}")
string(TOUPPER "${CMAKE_BUILD_TYPE}" _bt)
set(QEVAL_COMPILE_FLAGS "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${_bt}}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/build_info.h.in ${CMAKE_BINARY_DIR}/generated/qeval/build_info.h @ONLY)
