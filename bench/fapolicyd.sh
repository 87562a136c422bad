# shellcheck shell=bash
# fapolicyd 1.1.7 with the single rule `allow perm=any all : all`: setup, start, stop and
# teardown for bench/exec.sh and bench/files.sh, which source this file (after bench/lib.sh).
# Not a script of its own. The caller defines TMP; its cleanup calls fapolicyd_cleanup. No
# systemd is assumed: the daemon is started by hand, in the foreground, and stopped by pid.

# ---------------------------------------------------------------- state (fapolicyd_cleanup)
# shellcheck disable=SC2034 # FAPO_OK and FAPO_WHY are the callers' to read and set
FAPO_PID=""
FAPO_BACKUP=""          # set only once the fapolicyd backup is complete
RUN_FAPOLICYD_CREATED=0
FAPO_OK=0               # set up; cleared when a start fails
FAPO_WHY=""             # why the fapolicyd scenarios are not measured
FAPO_ALLOWED=""         # "Allowed accesses" in the report of the last fapolicyd_stop
FAPO_DENIED=""
FAPO_FS=""              # the watch_fs it was set up with

fapolicyd_refuse_running() { # a running fapolicyd (not ours) would distort every scenario
    if pgrep -x fapolicyd >/dev/null; then
        die "fapolicyd is already running; stop it first (systemctl stop fapolicyd)"
    fi
}

restore_fapolicyd() {
    [[ -n $FAPO_BACKUP ]] || return 0
    rm -rf /etc/fapolicyd && cp -a "$FAPO_BACKUP/etc" /etc/fapolicyd
    rm -rf /var/lib/fapolicyd && cp -a "$FAPO_BACKUP/varlib" /var/lib/fapolicyd
    if [[ -e $FAPO_BACKUP/access.log ]]; then
        cp -a "$FAPO_BACKUP/access.log" /var/log/fapolicyd-access.log
    else
        rm -f /var/log/fapolicyd-access.log
    fi
    FAPO_BACKUP=""
}

fapolicyd_cleanup() { # for the caller's EXIT trap: daemon stopped, config/db/log restored
    [[ -n $FAPO_PID ]] && stop_pid "$FAPO_PID" fapolicyd
    FAPO_PID=""
    restore_fapolicyd
    ((RUN_FAPOLICYD_CREATED)) && rm -rf /run/fapolicyd
    RUN_FAPOLICYD_CREATED=0
}

fapolicyd_setup() { # watch_fs [trust]: back up, then the single allow-all rule, watching only
    #                 filesystems of type watch_fs; trust backends as given (default: unchanged)
    local fs=$1 trust=${2:-}
    FAPO_FS=$fs
    # Back up everything a run can touch; restored by fapolicyd_cleanup (also on error).
    local b=$TMP/fapolicyd-backup
    mkdir -p "$b"
    cp -a /etc/fapolicyd "$b/etc"
    if [[ -d /var/lib/fapolicyd ]]; then cp -a /var/lib/fapolicyd "$b/varlib"; else mkdir "$b/varlib"; fi
    [[ -e /var/log/fapolicyd-access.log ]] && cp -a /var/log/fapolicyd-access.log "$b/access.log"
    FAPO_BACKUP=$b

    # The single rule, compiled the way the daemon loads it (rules.d -> compiled.rules).
    rm -f /etc/fapolicyd/rules.d/* /etc/fapolicyd/fapolicyd.rules
    echo 'allow perm=any all : all' >/etc/fapolicyd/rules.d/10-bench.rules
    fagenrules >/dev/null 2>&1 || true
    [[ -s /etc/fapolicyd/compiled.rules ]] \
        || printf 'allow perm=any all : all\n' >/etc/fapolicyd/compiled.rules
    local conf=/etc/fapolicyd/fapolicyd.conf
    # 1.1.7 marks every mount whose type (first column of /proc/mounts) is in watch_fs, and
    # follows mount changes; only the bench filesystem type.
    sed -i "s/^watch_fs[[:space:]]*=.*/watch_fs = $fs/" "$conf"
    grep -q '^watch_fs' "$conf" || echo "watch_fs = $fs" >>"$conf"
    if [[ -n $trust ]]; then
        sed -i "s/^trust[[:space:]]*=.*/trust = $trust/" "$conf"
        grep -q '^trust' "$conf" || echo "trust = $trust" >>"$conf"
    fi
    # fapolicyd drops to its user keeping CAP_SYS_RESOURCE among others; where that cap is not
    # in the bounding set (containers, some VMs) it exits "Cannot change to uid". Stay root then.
    local bnd
    bnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
    if (((0x$bnd >> 24 & 1) == 0)); then
        echo "note: CAP_SYS_RESOURCE not in the bounding set; running fapolicyd as root" >&2
        sed -i 's/^uid[[:space:]]*=.*/uid = root/; s/^gid[[:space:]]*=.*/gid = root/' "$conf"
    fi
    if [[ ! -d /run/fapolicyd ]]; then # normally made by systemd-tmpfiles
        mkdir -m 0770 /run/fapolicyd
        RUN_FAPOLICYD_CREATED=1
    fi
}

fapolicyd_start() { # mount: start it, wait until it listens and has marked mount; else
    #                  FAPO_WHY says why, the daemon is stopped, returns 1
    local mnt=$1 i
    : >"$TMP/fapolicyd.log"
    # Rewritten at each shutdown; the one before the first start is in the backup.
    [[ -n $FAPO_BACKUP ]] && rm -f /var/log/fapolicyd-access.log
    fapolicyd --debug-deny >>"$TMP/fapolicyd.log" 2>&1 &
    FAPO_PID=$!
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$FAPO_PID" 2>/dev/null; then
            wait "$FAPO_PID" 2>/dev/null || true
            FAPO_PID=""
            FAPO_WHY="fapolicyd exited at start: $(tail -3 "$TMP/fapolicyd.log" | tr '\n' ' ')"
            return 1
        fi
        grep -q 'Starting to listen for events' "$TMP/fapolicyd.log" && break
        sleep 0.1
    done
    if ! grep -q 'Starting to listen for events' "$TMP/fapolicyd.log"; then
        FAPO_WHY="fapolicyd not listening after 20 s"
    elif ! grep -q "added $mnt mount point" "$TMP/fapolicyd.log"; then
        FAPO_WHY="fapolicyd did not mark $mnt (watch_fs=$FAPO_FS)"
    else
        return 0
    fi
    fapolicyd_stop
    return 1
}

fapolicyd_stop() { # stop it; FAPO_ALLOWED/FAPO_DENIED = the decisions its shutdown report counts
    FAPO_ALLOWED="" FAPO_DENIED=""
    [[ -n $FAPO_PID ]] || return 0
    stop_pid "$FAPO_PID" fapolicyd
    FAPO_PID=""
    # Its shutdown report counts decisions: a check that it saw the workload.
    if [[ -r /var/log/fapolicyd-access.log ]]; then
        FAPO_ALLOWED=$(awk -F': *' '/^Allowed accesses/ {print $2; exit}' /var/log/fapolicyd-access.log)
        FAPO_DENIED=$(awk -F': *' '/^Denied accesses/ {print $2; exit}' /var/log/fapolicyd-access.log)
        echo "fapolicyd report: Allowed accesses: ${FAPO_ALLOWED:-?} Denied accesses: ${FAPO_DENIED:-?}" >&2
    fi
}
