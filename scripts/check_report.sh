#!/usr/bin/env bash
# Render an HTML report in headless Chromium, save a screenshot, and fail on console errors.
#
#   scripts/check_report.sh REPORT.html [SCREENSHOT.png]
#
# Exit codes: 0 rendered without console errors; 1 console errors, a missing screenshot or a
# Chromium failure (the log is printed); 77 Chromium is not installed (skip: apt-get install chromium).
# Chromium runs isolated: throwaway profile, no network services, no GPU, no sandbox (root in CI).
set -uo pipefail

report=${1:?usage: $0 REPORT.html [SCREENSHOT.png]}
shot=${2:-${report%.html}.png}
[[ -f $report ]] || { echo "check_report: $report not found" >&2; exit 1; }

browser=""
for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then browser=$c; break; fi
done
[[ -n $browser ]] || { echo "check_report: chromium not installed (apt-get install -y chromium); skipped" >&2; exit 77; }

profile=$(mktemp -d)
logfile=$(mktemp)
trap 'rm -rf "$profile" "$logfile"' EXIT
url="file://$(realpath "$report")"
rm -f "$shot"

timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-default-apps \
    --user-data-dir="$profile" --enable-logging=stderr --v=0 \
    --hide-scrollbars --window-size=1280,2000 --screenshot="$shot" "$url" >"$logfile" 2>&1
rc=$?

# Page problems are logged as CONSOLE(...) lines (console.error, uncaught exceptions) or as
# failed loads of the page's own resources; Chromium's own start-up noise (dbus, GPU) is not ours.
errors=$(grep -E 'CONSOLE|Uncaught|ERR_FILE_NOT_FOUND|Failed to load resource|Not allowed to load' "$logfile" || true)
status=0
if [[ $rc -ne 0 ]]; then
    echo "check_report: $browser exited with $rc" >&2; status=1
fi
if [[ -n $errors ]]; then
    echo "check_report: console errors in $report:" >&2; echo "$errors" >&2; status=1
fi
if [[ ! -s $shot ]]; then
    echo "check_report: no screenshot written to $shot" >&2; status=1
fi
if [[ $status -ne 0 ]]; then
    echo "---- chromium log ----" >&2; cat "$logfile" >&2
    exit 1
fi
echo "check_report: $report rendered without console errors; screenshot $shot ($(stat -c %s "$shot") bytes)"
