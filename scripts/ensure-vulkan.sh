#!/usr/bin/env bash
# Makes sure a Vulkan driver is present; installs lavapipe (Mesa's CPU Vulkan driver) when
# none is. Debian/Ubuntu only; elsewhere it says what to install.
set -euo pipefail
has_icd() {
    local d
    for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        if compgen -G "$d/*.json" >/dev/null; then return 0; fi
    done
    [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]
}
if has_icd && ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "No Vulkan driver found. Install your GPU's Vulkan driver, or Mesa's lavapipe (mesa-vulkan-drivers)." >&2
    exit 1
fi
echo "No Vulkan driver found: installing lavapipe (mesa-vulkan-drivers)..." >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
