#!/bin/sh
# Quick start: install what is missing, build, and run segopsd in the
# foreground on the dry-run config (api_url = stdout: every batch it
# would send is printed as one JSON line). Stop it with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build daemon/segopsd ctl/segopsctl >/dev/null

mkdir -p /run/segopsd
cat <<MSG
segopsd is starting on configs/dry-run.conf.
  events socket:  /run/segopsd/events.sock   (datagrams, fire-and-forget)
  control socket: /run/segopsd/segopsd.sock  (NDJSON + ops, replies)
From another terminal, send a first event and look at segopsd's status:
  build/ctl/segopsctl track --user u1 --type deploy --payload '{"sha":"abc"}'
  build/ctl/segopsctl status
  build/ctl/segopsctl health     # exit 0: delivering (here: a dry run)
  build/ctl/segopsctl help       # every command; help COMMAND for one
or with socat, the sockets being plain NDJSON:
  echo '{"user_id":"u1","event_type":"deploy","payload":{"sha":"abc"}}' | socat -u - UNIX-SENDTO:/run/segopsd/events.sock
  echo '{"op":"stats"}' | socat - UNIX-CONNECT:/run/segopsd/segopsd.sock
Batches appear below within flush_interval (1 s). Ctrl-C stops it cleanly.
MSG
exec build/daemon/segopsd --config configs/dry-run.conf
