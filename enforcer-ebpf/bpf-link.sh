#!/bin/sh
# Link step for the BPF target without bpf-linker (docs/toolchain recipe A).
#
# rustc (bpfel-unknown-none, fat LTO, one codegen unit) calls its linker as
#   bpf-link.sh --export-symbols <file> <one .o bitcode file> -L <dir> --cpu generic \
#               -o <output> -O3 [--debug]
# and this turns the bitcode into a BPF ELF object with the toolchain's own llc, so
# the LLVM always matches rustc's. `ENFORCER_LLC` overrides the llc path (build.rs sets
# it); otherwise llc comes from the nightly sysroot's llvm-tools component.
set -eu

output=""
inputs=""
ninputs=0
while [ $# -gt 0 ]; do
    case "$1" in
        -o) output="$2"; shift 2 ;;
        --export-symbols | -L | --cpu | --cpu-features | -C | --emit) shift 2 ;;
        -o*) output="${1#-o}"; shift ;;
        -L*) shift ;;
        -*) shift ;;
        *) inputs="$inputs $1"; ninputs=$((ninputs + 1)); shift ;;
    esac
done

if [ -z "$output" ] || [ "$ninputs" -eq 0 ]; then
    echo "bpf-link.sh: expected bitcode input(s) and -o <output>" >&2
    exit 1
fi

if [ -n "${ENFORCER_LLC:-}" ]; then
    llc="$ENFORCER_LLC"
else
    sysroot="$(rustc +nightly --print sysroot)"
    llc="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/llc"
fi
if [ ! -x "$llc" ]; then
    echo "bpf-link.sh: $llc not found: run 'rustup component add llvm-tools --toolchain nightly'" >&2
    exit 1
fi

if [ "$ninputs" -gt 1 ]; then
    # More than one bitcode file (should not happen with fat LTO + codegen-units=1):
    # merge them with llvm-link from the same toolchain first.
    llvm_link="$(dirname "$llc")/llvm-link"
    merged="$output.merged.bc"
    # shellcheck disable=SC2086 # word splitting of the input list is intended
    "$llvm_link" $inputs -o "$merged"
    inputs="$merged"
fi

# shellcheck disable=SC2086
exec "$llc" -march=bpfel -mcpu=v3 -filetype=obj -O3 $inputs -o "$output"
