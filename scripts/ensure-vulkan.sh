#!/usr/bin/env bash
# Makes sure a Vulkan driver is present, installing lavapipe (Mesa's CPU Vulkan driver) when
# none is, and a TrueType font for the plots' text (fonts-dejavu-core) when none of the
# usual ones is. Debian/Ubuntu only; elsewhere it says what to install.
set -euo pipefail
has_icd() {
    local d
    for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        if compgen -G "$d/*.json" >/dev/null; then return 0; fi
    done
    [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]
}
has_vulkan() {
    has_icd && ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'
}
# The first fonts src/report/plot.rs looks for (it also honours WGOLF_FONT).
has_font() {
    local f
    if [ -n "${WGOLF_FONT:-}" ] && [ -f "$WGOLF_FONT" ]; then return 0; fi
    for f in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/TTF/DejaVuSans.ttf \
        /usr/share/fonts/dejavu/DejaVuSans.ttf /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf \
        /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf; do
        if [ -f "$f" ]; then return 0; fi
    done
    return 1
}
packages=()
if ! has_vulkan; then packages+=(mesa-vulkan-drivers libvulkan1); fi
if ! has_font; then packages+=(fonts-dejavu-core); fi
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    if ! has_vulkan; then
        echo "No Vulkan driver found. Install your GPU's Vulkan driver, or Mesa's lavapipe (mesa-vulkan-drivers)." >&2
        exit 1
    fi
    echo "No TrueType font found for the plots: install DejaVu Sans (or set WGOLF_FONT to a .ttf file); runs still train, without curves.png." >&2
    exit 0
fi
echo "Installing ${packages[*]} (lavapipe when no Vulkan driver exists, a font for the plots)..." >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
