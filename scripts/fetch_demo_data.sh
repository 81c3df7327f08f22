#!/usr/bin/env bash
# Put the demo's real images into DEST: digits.png (5,000 handwritten digits) and vtest.avi
# (795 CCTV frames), taken from the Debian package opencv-doc without installing it.
# Usage: scripts/fetch_demo_data.sh DEST      Exit 3: no apt-get/dpkg-deb on this system.
set -euo pipefail

DEST="$1"
FILES=(digits.png vtest.avi)
SRC=usr/share/doc/opencv-doc/examples/data
mkdir -p "$DEST"

# opencv-doc already installed: copy.
if [[ -s "/$SRC/digits.png" && -s "/$SRC/vtest.avi" ]]; then
    for f in "${FILES[@]}"; do cp "/$SRC/$f" "$DEST/$f.tmp" && mv "$DEST/$f.tmp" "$DEST/$f"; done
    echo "copied from /$SRC"
    exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || exit 3

TMP="$(mktemp -d "$DEST/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
# apt-get download needs the package lists; a fresh machine may have none yet.
if ! apt-get download -q opencv-doc; then
    [[ $(id -u) == 0 ]] || { echo "apt-get download failed; as root run: apt-get update" >&2; exit 1; }
    apt-get update -qq
    apt-get download -q opencv-doc
fi
deb=(opencv-doc_*.deb)
dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x "${FILES[@]/#/./$SRC/}"
for f in "${FILES[@]}"; do
    [[ -s "$SRC/$f" ]] || { echo "$f missing from ${deb[0]}" >&2; exit 1; }
    mv "$SRC/$f" "$DEST/$f"
done
echo "extracted ${FILES[*]} from ${deb[0]}"
