#!/bin/sh
# The container's entrypoint: runs as user lab at every start, then runs the container's command.
# `docker compose exec` runs your commands as user lab. So that the files they write into this
# mounted folder (mqtt_messages.log, client_log.txt) belong to you, lab takes the uid and gid of
# the folder's owner: 1000 or 1001 in your own checkout, root in one cloned with sudo.
set -eu
uid=$(stat -c %u .)
gid=$(stat -c %g .)
if [ "$(id -u lab):$(id -g lab)" != "$uid:$gid" ]; then
    passwd=$(sed "s/^lab:\([^:]*\):[0-9]*:[0-9]*:/lab:\1:$uid:$gid:/" /etc/passwd)
    group=$(sed "s/^lab:\([^:]*\):[0-9]*:/lab:\1:$gid:/" /etc/group)
    if ! { printf '%s\n' "$passwd" >/etc/passwd && printf '%s\n' "$group" >/etc/group; } 2>/dev/null; then
        echo "warning: cannot give user lab the owner ($uid:$gid) of $PWD: files written there stay $(id -u):$(id -g)" >&2
    fi
fi
exec "$@"
