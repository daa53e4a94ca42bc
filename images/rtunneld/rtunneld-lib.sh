# shellcheck shell=bash
# Sourced by the entrypoint, rtunneld-keys, rtunneld-principals, rtunneld-connlog and rtunneld-reaper: the facts
# and transforms they share, in bash builtins only (the key lookup forks nothing), results in
# REPLY so that no caller needs a subshell. rtunneld-admin (Python) has the same transforms;
# test/relay-admin.test.ts holds the two to the same answers.

# shellcheck disable=SC2034 # used by the scripts that source this file
RUN=/run/rtunneld
# shellcheck disable=SC2034
STATE=/var/lib/rtunneld
# Records are DIR/PID.START.USER.KEY (rtunneld-keys writes them, the reaper and the admin command
# read them); the principals command's, of a certificate login, DIR/PID.START.jump.KEY.cert (a
# key and its certificate offered on one connection keep a record each).
# shellcheck disable=SC2034
RECORD_RE='^([0-9]+)\.([0-9]+)\.(tunnel|jump|admin)\.([A-Za-z0-9_-]{43})(\.cert)?$'
# shellcheck disable=SC2034
FP_RE='^SHA256:[A-Za-z0-9+/]{43}$'
# Byte order for the string comparisons below (sshd passes its LANG on to its helpers).
LC_ALL=C

# Certificates the kit issues (lib/contract/ca.ts parseKeyId, parsePrincipal): a key id
# rtunnel:HOLDER:SERIAL (SERIAL 1..2^64-1, no leading zero) and the whole relay grant in one
# principal, rtunnel-grant:A+B (device names, sorted and unique, at most 255).
# shellcheck disable=SC2034
KEY_ID_RE='^rtunnel:([a-z0-9][a-z0-9-]{0,62}):([1-9][0-9]{0,19})$'
GRANT_RE='^rtunnel-grant:[a-z0-9][a-z0-9-]{0,62}(\+[a-z0-9][a-z0-9-]{0,62})*$'

# Whether $1 is a key id the kit issues: its holder in REPLY.
kit_key_id() {
  [[ $1 =~ $KEY_ID_RE ]] || return 1
  REPLY=${BASH_REMATCH[1]}
  local serial=${BASH_REMATCH[2]}
  # 20 digits: compared as text (bash's numbers stop at 2^63-1), equal length, byte order.
  # shellcheck disable=SC2071 # a text comparison, on purpose
  ((${#serial} < 20)) || [[ ! $serial > 18446744073709551615 ]]
}

# Whether $1 is a grant principal the kit issues: its devices (A+B) in REPLY.
kit_grant() {
  [[ $1 =~ $GRANT_RE ]] || return 1
  local prev="" d devices
  IFS=+ read -r -a devices <<<"${1#rtunnel-grant:}"
  ((${#devices[@]} <= 255)) || return 1
  for d in "${devices[@]}"; do
    [[ -z $prev || $prev < "$d" ]] || return 1
    prev=$d
  done
  REPLY=${1#rtunnel-grant:}
}

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

# Whether PID is still the sshd-session process that started at START (a record's pid and
# start time): only such a record stands for a live connection.
live_session() {
  local comm
  { IFS= read -r comm <"/proc/$1/comm"; } 2>/dev/null || return 1
  [[ $comm == sshd-session ]] || return 1
  start_time "$1" && [[ $REPLY == "$2" ]]
}

# How many live authenticated connections USER has with the key whose file-name form is
# SAFE (markers in online/, written by rtunneld-connlog from sshd's "Accepted" lines), not
# counting the connection PID EXCEPT: REPLY.
live_connections() {
  local user=$1 safe=$2 except=${3-} m name n=0
  for m in "$RUN"/online/*."$user.$safe"; do
    name=${m##*/}
    [[ $name =~ $RECORD_RE ]] || continue
    [[ ${BASH_REMATCH[1]} == "$except" ]] && continue
    live_session "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" && n=$((n + 1))
  done
  REPLY=$n
}

# The most live connections one key of USER may hold (the entrypoint writes limits from
# RTUNNELD_*_CONNECTIONS): REPLY, or status 1 when the file does not say.
connection_limit() {
  local account max
  while read -r account max; do
    if [[ $account == "$1" && $max =~ ^[0-9]+$ ]]; then
      REPLY=$max
      return 0
    fi
  done 2>/dev/null <"$RUN/limits"
  return 1
}
