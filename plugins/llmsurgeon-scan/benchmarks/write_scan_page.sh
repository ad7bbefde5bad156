#!/usr/bin/env bash
# Run scans and write their tables into docs/benchmarks-scan.md.
#
#   bash plugins/llmsurgeon-scan/benchmarks/write_scan_page.sh quick   # coarse, --quick
#   bash plugins/llmsurgeon-scan/benchmarks/write_scan_page.sh full    # coarse, mid, fine
#   bash plugins/llmsurgeon-scan/benchmarks/write_scan_page.sh generation  # after full
#   bash plugins/llmsurgeon-scan/benchmarks/write_scan_page.sh page    # no scan, tables only
#
# The page's text above the marker line stays as it is. Below it, each scan
# that has a scan.md under llmsurgeon-runs/ gets that file's tables, quick
# first. A scan without one keeps the section the page already has. A
# scan read from its cache records its own short wall time, so write the page
# with `page` after the run that did the work.
# `generation` audits the full coarse scan's targets again, with C measured
# on each target's continuations of reference prefixes. It reads the targets
# that `full` cached, so it trains nothing.
# Build the reference text first with benchmarks/build_scan_corpora.sh.
set -euo pipefail

root="$(cd "$(dirname "$0")/../../.." && pwd)"
# Relative to the repository root, as the tables print the command.
configs="plugins/llmsurgeon-scan/llmsurgeon_scan/configs"
page="$root/docs/benchmarks-scan.md"
marker="<!-- Tables below are written by plugins/llmsurgeon-scan/benchmarks/write_scan_page.sh -->"
mode="${1:-full}"

# One thread each for torch and BLAS, unless the caller sets them: these
# tiny models gain nothing from more, and on a busy machine extra threads
# slowed training several-fold.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

cd "$root"
case "$mode" in
    quick) llmsurgeon scan "$configs/scan-coarse.yaml" --quick ;;
    full)
        for level in coarse mid fine; do
            llmsurgeon scan "$configs/scan-$level.yaml"
        done
        ;;
    generation)
        # The continuations need room for a prompt in the targets' 64-token
        # context, so every sample is 48 tokens long and the targets are
        # sampled again.
        llmsurgeon scan "$configs/scan-coarse.yaml" --set calibrate.mode=generation \
            --set sampling.max_new_tokens=48 --set targets_dir=llmsurgeon-runs/scan-coarse \
            --set scan_dir=llmsurgeon-runs/scan-coarse-generation
        ;;
    page) ;;
    *) echo "usage: $0 quick|full|generation|page" >&2; exit 2 ;;
esac

head="$(awk -v marker="$marker" '{ print } $0 == marker { exit }' "$page")"

# Print the page's current section of scan $1 (from its heading to its plot
# line), so a scan that was not run here keeps its published tables.
kept_section() {
    awk -v marker="$marker" -v image="![$1](scan-plots/$1.png)" '
        $0 == marker { inside = 1; next }
        !inside { next }
        $0 == image { printf "%s%s", buffer, $0; exit }
        /^!\[.*\]\(scan-plots\/.*\.png\)$/ { buffer = ""; next }
        buffer == "" && $0 == "" { next }
        { buffer = buffer $0 "\n" }
    ' "$page"
}

{
    printf '%s\n\n' "$head"
    for run in scan-coarse-quick scan-coarse scan-coarse-generation scan-mid scan-fine; do
        if [ -f "llmsurgeon-runs/$run/scan.md" ]; then
            cat "llmsurgeon-runs/$run/scan.md"
            printf '\n![%s](scan-plots/%s.png)\n\n' "$run" "$run"
            mkdir -p docs/scan-plots
            cp "llmsurgeon-runs/$run/scan.png" "docs/scan-plots/$run.png"
        else
            section="$(kept_section "$run")"
            if [ -n "$section" ]; then
                printf '%s\n\n' "$section"
            fi
        fi
    done
} > "$page.tmp"
mv "$page.tmp" "$page"
