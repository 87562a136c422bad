# shellcheck shell=bash
# The auditd scenario's setup, start and teardown for bench/process.sh, which sources this file
# (`. "$(dirname "$0")/auditd.sh"`, after bench/lib.sh). Not a script of its own. The caller
# defines RULE (the audit rule, as auditctl -a/-d arguments), TMP, and POLICY_RC_CREATED; run_auditd
# there does the measurement.

# ---------------------------------------------------------------- state (cleanup calls audit_restore)
AUDITD_PID=""           # an auditd this script started
AUDIT_RULE_ADDED=0
AUDIT_SAVED=""          # "enabled failure backlog_limit backlog_wait_time" before we changed them
AUDIT_WHY=""            # why the scenario is not measured
AUDIT_OK=0
AUDIT_OWN=0             # 1: we start our own auditd per round; 0: a running one is used

audit_status() { # field -> value from `auditctl -s`
    auditctl -s 2>/dev/null | awk -v k="$1" '$1 == k { print $2; exit }'
}

audit_restore() { # rule off, our auditd stopped, kernel settings back
    if ((AUDIT_RULE_ADDED)); then
        auditctl -d "${RULE[@]}" >/dev/null 2>&1 || echo "warning: could not remove the audit rule" >&2
        AUDIT_RULE_ADDED=0
    fi
    if [[ -n $AUDITD_PID ]]; then
        stop_pid "$AUDITD_PID" auditd
        AUDITD_PID=""
    fi
    if [[ -n $AUDIT_SAVED ]]; then
        local e f b w
        read -r e f b w <<<"$AUDIT_SAVED"
        { auditctl -f "$f" && auditctl -b "$b" && auditctl --backlog_wait_time "$w"; } >/dev/null 2>&1 \
            || echo "warning: could not restore audit failure/backlog settings" >&2
        auditctl -e "$e" >/dev/null 2>&1 || echo "warning: could not restore audit enabled=$e" >&2
        AUDIT_SAVED=""
    fi
}

auditd_install() { # apt-get install auditd, not started (the script starts its own when it needs one)
    log "installing auditd"
    if apt_install auditd; then
        stop_started auditd || true
    else
        AUDIT_WHY="apt-get install auditd failed"
    fi
    command -v auditctl >/dev/null || AUDIT_WHY=${AUDIT_WHY:-"auditctl still missing after install"}
}

audit_setup() {
    local enabled pid
    enabled=$(audit_status enabled)
    [[ -n $enabled ]] || { AUDIT_WHY="auditctl -s failed (no kernel audit support?)"; return 1; }
    [[ $enabled == 2 ]] && { AUDIT_WHY="audit configuration is locked (enabled 2)"; return 1; }
    if auditctl -l 2>/dev/null | grep -q 'key=custosbench'; then
        AUDIT_WHY="an audit rule with key custosbench already exists"
        return 1
    fi
    pid=$(audit_status pid)
    if [[ ${pid:-0} != 0 ]] && kill -0 "$pid" 2>/dev/null; then
        AUDIT_OWN=0
        AUDIT_LOG=""
        echo "auditd is running (pid $pid); using it as it is" >&2
    elif pgrep -x auditd >/dev/null; then
        AUDIT_WHY="an auditd is running but not registered with the kernel"
        return 1
    else
        AUDIT_OWN=1
        # Debian's auditd.conf with the log in our temp dir and no rotation.
        local conf=$TMP/audit/auditd.conf
        AUDIT_LOG=$TMP/audit/audit.log
        if [[ -r /etc/audit/auditd.conf ]]; then
            grep -vE '^[[:space:]]*(log_file|max_log_file_action)[[:space:]]*=' \
                /etc/audit/auditd.conf >"$conf"
        else
            : >"$conf"
        fi
        printf 'log_file = %s\nmax_log_file_action = IGNORE\n' "$AUDIT_LOG" >>"$conf"
        chmod 0640 "$conf"
    fi
}

auditd_start() {
    : >"$TMP/auditd.log"
    auditd -n -c "$TMP/audit" >>"$TMP/auditd.log" 2>&1 &
    AUDITD_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$AUDITD_PID" 2>/dev/null; then
            wait "$AUDITD_PID" 2>/dev/null || true
            AUDITD_PID=""
            AUDIT_WHY="auditd exited at start: $(tail -3 "$TMP/auditd.log" | tr '\n' ' ')(-n logs to syslog; \`auditd -f -c DIR\` shows why)"
            return 1
        fi
        [[ $(audit_status pid) == "$AUDITD_PID" ]] && return 0
        sleep 0.1
    done
    AUDIT_WHY="auditd did not register with the kernel in 10 s"
    return 1
}

auditd_env() { # the auditd lines of the environment report
    local how
    if ((!AUDIT_OK)); then
        how="($AUDIT_WHY)"
    elif ((AUDIT_OWN)); then
        how="(own instance, log $AUDIT_LOG)"
    else
        how="(the running instance)"
    fi
    echo "auditd:      $(dpkg-query -W -f='${Version}' auditd 2>/dev/null || echo none) $how"
    if ((AUDIT_OK)); then
        echo "audit:       $(auditctl -s | tr '\n' ' ')"
        echo "audit rules: $(auditctl -l | tr '\n' ';')"
    fi
}
