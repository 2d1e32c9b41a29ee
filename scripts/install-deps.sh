#!/usr/bin/env bash
# Installs every Debian package that QEval's build, tests and tools need.
# Idempotent: safe to run again; apt-get skips what is already installed.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev            # libFuzzer + sanitizer runtimes
  libopenblas-dev                     # sgemm for prefill
  libsentencepiece-dev                # SentencePiece .model tokenizers
  libpcre2-dev                        # pre-tokenizer regexes (Unicode properties)
  libutf8proc-dev                     # NFC/NFKC normalizers of tokenizer.json
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libfmt-dev libspdlog-dev
  libsqlite3-dev
  libcpp-httplib-dev libssl-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3
)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
echo "install-deps: all packages present"
