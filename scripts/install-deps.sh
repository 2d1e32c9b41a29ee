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

# Reports (qeval report): Debian's chromium renders a report headless in the report tests, and
# npm installs the chart libraries (vega, vega-lite, vega-embed; package.json) into
# node_modules/, which qeval report inlines. Re-run only when package-lock.json changed.
# npm: Debian's package only where no npm is present (a NodeSource nodejs ships its own npm and
# conflicts with Debian's).
REPORT_PACKAGES=(chromium)
command -v npm > /dev/null 2>&1 || REPORT_PACKAGES+=(npm)
$SUDO apt-get install -y -qq --no-install-recommends "${REPORT_PACKAGES[@]}"
QEVAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$QEVAL_ROOT/package-lock.json" ]; then
  lock_sum="$(sha256sum "$QEVAL_ROOT/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$QEVAL_ROOT/node_modules/.qeval-lock-sha256" 2>/dev/null)" != "$lock_sum" ]; then
    (cd "$QEVAL_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$QEVAL_ROOT/node_modules/.qeval-lock-sha256"
  fi
  echo "install-deps: report chart libraries present in node_modules/"
fi
