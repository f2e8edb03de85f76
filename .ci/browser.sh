#!/usr/bin/env bash
# Installs Debian's chromium for the console's browser tests
# (internal/console), which drive it headless with chromedp: no browser is
# downloaded by the tests themselves. Idempotent: nothing happens when
# /usr/bin/chromium is there already. Point HERALD_CHROMIUM at another
# binary to use that instead.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium) present"
  exit 0
fi
echo "browser: installing Debian's chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
/usr/bin/chromium --version
