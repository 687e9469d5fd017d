#!/usr/bin/env bash
# Fuzzes the C image shim (Sources/CImageShim) with libFuzzer + ASan + UBSan.
#
#   scripts/fuzz.sh [seconds]        # default 60
#
# Builds .build-fuzz/ingest_fuzzer from Fuzz/ingest_fuzzer.c, seeds .build-fuzz/corpus from
# Tests/Corpus/pngsuite/*.png and Tests/Corpus/jpeg/*.jpg (or $IMAGEGEN_CORPUS_DIR, searched
# recursively for *.png / *.jpg / *.jpeg), and runs for the given time. Crash, leak and timeout
# inputs are written to .build-fuzz/artifacts/. Reproduce one with:
#   .build-fuzz/ingest_fuzzer .build-fuzz/artifacts/crash-<hash>
# Uses $CLANG if set, else the Swift toolchain's clang when it ships libFuzzer, else Debian's clang
# (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz.sh [seconds]" >&2
    exit 2
fi

work=.build-fuzz
mkdir -p "$work/corpus" "$work/artifacts"

has_libfuzzer() {
    local cc="$1" probe
    probe="$(mktemp -d)"
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' >"$probe/t.c"
    "$cc" -fsanitize=fuzzer,address,undefined "$probe/t.c" -o "$probe/t" >/dev/null 2>&1
    local ok=$?
    rm -rf "$probe"
    return $ok
}

apt_install() {
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

cc="${CLANG:-}"
if [ -z "$cc" ]; then
    for candidate in /opt/swift/usr/bin/clang "$(command -v clang || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && has_libfuzzer "$candidate"; then
            cc="$candidate"
            break
        fi
    done
fi
if [ -z "$cc" ]; then
    echo "No clang with libFuzzer found; installing Debian's clang..."
    apt_install clang
    cc="$(command -v clang)"
fi
if ! pkg-config --exists libpng libjpeg zlib; then
    echo "Installing libpng/libjpeg development files..."
    apt_install pkg-config libpng-dev libjpeg62-turbo-dev zlib1g-dev
fi

echo "Compiler: $cc ($("$cc" --version | head -n1))"
# shellcheck disable=SC2046
"$cc" -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined \
    -I Sources/CImageShim/include -I Sources/CImageShim \
    Fuzz/ingest_fuzzer.c Sources/CImageShim/*.c \
    $(pkg-config --cflags --libs libpng libjpeg zlib) -lpthread \
    -o "$work/ingest_fuzzer"

# Seed the corpus (libFuzzer adds what it finds to the same directory, so it grows across runs).
seeded=0
if [ -n "${IMAGEGEN_CORPUS_DIR:-}" ]; then
    while IFS= read -r -d '' f; do
        cp -n "$f" "$work/corpus/" && seeded=$((seeded + 1))
    done < <(find "$IMAGEGEN_CORPUS_DIR" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' \) -print0)
else
    for f in Tests/Corpus/pngsuite/*.png Tests/Corpus/jpeg/*.jpg; do
        [ -f "$f" ] || continue
        cp -n "$f" "$work/corpus/" && seeded=$((seeded + 1))
    done
fi
echo "Seeded $seeded files; corpus now $(find "$work/corpus" -type f | wc -l) files in $work/corpus"
echo "Crashes, leaks and timeouts go to $work/artifacts/"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
"$work/ingest_fuzzer" "$work/corpus" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" || status=$?

found="$(find "$work/artifacts" -type f | wc -l)"
if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
    echo "Fuzzer exited with status $status; $found artifact(s) in $work/artifacts/:" >&2
    ls -l "$work/artifacts" >&2
    exit 1
fi
echo "No crashes in ${seconds}s. Artifacts (none so far) would be in $work/artifacts/"
