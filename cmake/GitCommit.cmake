# Script mode (cmake -DSOURCE_DIR=... -DOUTPUT=... -P GitCommit.cmake), run at every build: writes
# the commit of the source tree (with "-dirty" when tracked files differ from it) into OUTPUT,
# touching the file only when the text changes, so an unchanged tree rebuilds nothing and a new
# commit recompiles one file. Configure-time stamping went stale in incremental builds.
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE QEVAL_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT QEVAL_GIT_COMMIT)
  set(QEVAL_GIT_COMMIT "unknown")
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no
    WORKING_DIRECTORY ${SOURCE_DIR}
    OUTPUT_VARIABLE _changes OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_changes)
    string(APPEND QEVAL_GIT_COMMIT "-dirty")
  endif()
endif()
configure_file(${SOURCE_DIR}/cmake/git_commit.cpp.in ${OUTPUT} @ONLY)
