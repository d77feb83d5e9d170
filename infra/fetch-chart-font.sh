#!/usr/bin/env bash
# Puts the report chart's font where the ChartFontLayer (infra/template.yaml) takes it from:
# infra/chart-font/fonts/autopilot-chart.ttc, mounted on Lambda at /opt/fonts/autopilot-chart.ttc.
#
#   infra/fetch-chart-font.sh            # Debian's fonts-wqy-microhei (Apache-2.0 / GPLv3)
#   infra/fetch-chart-font.sh FONT_FILE  # any .ttf/.ttc/.otf with Chinese and Latin glyphs
#
# Run it once before `sam build`. The file (5 MB) is not committed: it is a third-party
# font, fetched from the distribution's archive like any other package.
set -euo pipefail
cd "$(dirname "$0")"

target=chart-font/fonts/autopilot-chart.ttc
mkdir -p "$(dirname "$target")"
if [[ $# -ge 1 ]]; then
    cp -- "$1" "$target"
elif [[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]]; then
    cp /usr/share/fonts/truetype/wqy/wqy-microhei.ttc "$target"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download fonts-wqy-microhei >/dev/null)
    dpkg-deb -x "$work"/fonts-wqy-microhei_*.deb "$work/root"
    cp "$work/root/usr/share/fonts/truetype/wqy/wqy-microhei.ttc" "$target"
fi
echo "chart font: infra/$target ($(stat -c %s "$target") bytes)"
