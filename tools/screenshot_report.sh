#!/usr/bin/env bash
# Render a run's report.html to a PNG with headless Chromium, to check it renders offline.
#   tools/screenshot_report.sh RUNDIR [OUT.png] [HEIGHT]
# The window is 1100 px wide (the report's charts are 960 px, plus the page margins), and
# HEIGHT px tall (default 3000: Chromium screenshots the window, not the whole page; give more
# for a long report). Needs Debian's chromium (apt-get install chromium). Nothing is fetched:
# the page is self-contained, and Chromium's background networking is switched off.
set -euo pipefail
run_dir=${1:?usage: tools/screenshot_report.sh RUNDIR [OUT.png] [HEIGHT]}
out=${2:-$run_dir/report.png}
height=${3:-3000}
page="$(cd "$run_dir" && pwd)/report.html"
[ -f "$page" ] || { echo "no report.html in $run_dir (run: fleetplane report $run_dir)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no Chromium found (apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
case "$out" in /*) ;; *) out="$(pwd)/$out" ;; esac
rm -f "$out"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size="1100,$height" --screenshot="$out" "file://$page" >/dev/null 2>&1
[ -s "$out" ] || { echo "Chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
