#!/usr/bin/env bash
# Set up this machine for the lab: Debian packages (as root) and the .venv virtualenv.
#   scripts/setup.sh demo   - what `make demo` needs: Mosquitto + the venv
#   scripts/setup.sh test   - what `make test` needs: also tcpdump, tshark, nc, curl, wrk
#   scripts/setup.sh capture - what `make capture` needs: Mosquitto, tcpdump, tshark (editcap), iproute2;
#                              not root: only says what is missing (Docker captures need none of it)
# Idempotent: installs only what is missing, rebuilds the venv only when a
# requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-demo}"
case "$profile" in
  demo) apt_pkgs=(mosquitto mosquitto-clients) ;;
  test) apt_pkgs=(mosquitto mosquitto-clients netcat-openbsd curl tcpdump tshark wrk iproute2 procps) ;;
  capture) apt_pkgs=(mosquitto mosquitto-clients tcpdump tshark iproute2 procps) ;;
  *) echo "usage: $0 demo|test|capture" >&2; exit 2 ;;
esac

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif [[ "$profile" == capture ]]; then
    echo "setup: not installed: ${missing[*]} (captures without Docker need them): sudo apt-get install ${missing[*]}" >&2
  else
    echo "setup: missing packages: ${missing[*]} - install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# spyne 2.14 imports `cgi`, removed in Python 3.13: pick a 3.11/3.12 interpreter.
pick_python() {
  for c in "${PYTHON:-}" python3.11 python3.12 python3; do
    [[ -n "$c" ]] || continue
    command -v "$c" >/dev/null || continue
    if "$c" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

reqs=(requirements-dev.txt rest/requirements.txt soap/requirements.txt mqtt/requirements.txt
      reqresp/requirements.txt upcall/requirements.txt)
stamp_now=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f .venv/.stamp && "$(cat .venv/.stamp)" == "$stamp_now" ]]; then
  exit 0
fi
py=$(pick_python) || { echo "setup: need Python 3.10-3.12 (spyne breaks on 3.13): install python3.11 and retry" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $($py --version)"
  if ! "$py" -m venv .venv; then
    echo "setup: python venv module missing: apt-get install python3-venv" >&2; exit 1
  fi
fi
echo "setup: installing Python requirements into .venv"
# (the filter drops only pip's notes about find-links folders that do not exist on this machine)
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
# make `import labkit` work for every script run with .venv/bin/python
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
pwd > "$site/messaging_lab.pth"
echo "$stamp_now" > .venv/.stamp
