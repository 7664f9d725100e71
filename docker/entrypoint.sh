#!/bin/sh
# trtd <api|prefill|decode|launcher> [flags...]: runs apps/<name>/dist/main.js, compiled in the image (same flags as `nx run <name>:serve`).
set -e
app="$1"
case "$app" in
  api|prefill|decode|launcher) shift ;;
  *) echo "usage: trtd <api|prefill|decode|launcher> [flags...]" >&2; exit 2 ;;
esac
cd /trtd
exec node "apps/$app/dist/main.js" "$@"
