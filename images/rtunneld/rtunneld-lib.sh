# shellcheck shell=bash
# Sourced by the entrypoint, rtunneld-keys, rtunneld-connlog and rtunneld-reaper: the facts
# and transforms they share, in bash builtins only (the key lookup forks nothing), results in
# REPLY so that no caller needs a subshell. rtunneld-admin (Python) has the same transforms;
# test/relay-admin.test.ts holds the two to the same answers.

# shellcheck disable=SC2034 # used by the scripts that source this file
RUN=/run/rtunneld
# shellcheck disable=SC2034
STATE=/var/lib/rtunneld
# Records are DIR/PID.START.USER.KEY (rtunneld-keys writes them, the reaper and the admin command read them).
# shellcheck disable=SC2034
RECORD_RE='^([0-9]+)\.([0-9]+)\.(tunnel|jump)\.([A-Za-z0-9_-]{43})$'
# shellcheck disable=SC2034
FP_RE='^SHA256:[A-Za-z0-9+/]{43}$'

# A fingerprint as a file name: SHA256:ab/c+d... -> ab_c-d...
safe_fp() {
  local s=${1#SHA256:}
  s=${s//\//_}
  REPLY=${s//+/-}
}

# Field 22 of /proc/PID/stat, the process's start time (a recycled pid has another): REPLY,
# or status 1 when there is no such process.
start_time() {
  local stat f
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a f <<<"${stat##*) }"
  REPLY=${f[19]}
}

# Field 3 of /proc/PID/stat, the process's state (R, S, Z, ...): REPLY, or Z when it is gone.
proc_state() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || stat=") Z"
  stat=${stat##*) }
  REPLY=${stat%% *}
}
