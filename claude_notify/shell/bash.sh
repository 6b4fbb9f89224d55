# claude-notify shell integration for bash >= 5.0: eval "$(claude-notify shell-init bash)"
# Settings are baked in below: eval again after changing shell.threshold or shell.commands.
# Put it last in ~/.bashrc, so that its prompt hook runs first and sees the command's $?.
if [[ $- == *i* ]] && (( BASH_VERSINFO[0] >= 5 )); then
__claude_notify_argv=(@ARGV@)
__claude_notify_min=@MIN_US@
__claude_notify_default=@DEFAULT_US@
__claude_notify_t0=
: "${__claude_notify_hn:=-1}" "${__claude_notify_prev:=-1}"
declare -ga __claude_notify_nil=()
# Where the history line is read back without a fork: a directory only we own (the login's
# runtime directory, macOS's per-user TMPDIR, else our state directory), never a shared one
# such as /tmp, which root owns but where anyone could plant a symlink under the name (shared
# directories carry the sticky bit).
__claude_notify_hf=
for __claude_notify_d in "${XDG_RUNTIME_DIR-}" "${TMPDIR-}" @STATE@; do
    if [[ -n $__claude_notify_d && -d $__claude_notify_d && -O $__claude_notify_d \
          && -w $__claude_notify_d && ! -k $__claude_notify_d ]]; then
        __claude_notify_hf=${__claude_notify_d%/}/claude-notify-history.$$
        break
    fi
done
unset __claude_notify_d

# Runs first in PROMPT_COMMAND: arithmetic only, unless the command ran long enough to matter.
__claude_notify_precmd() {
    local s=$?
    if [[ -n ${__claude_notify_t0-} ]]; then
        local t0=$__claude_notify_t0
        __claude_notify_t0=
        local el=$(( ${EPOCHREALTIME/[.,]/} - t0 ))
        if (( el >= __claude_notify_min )); then
            __claude_notify_done "$s" "$el" "$t0"
        fi
    fi
    return "$s"
}

__claude_notify_done() {
    local cmd= exp= line w re='^ *[0-9]+[* ] (.*)$'
    # A line kept out of the history (ignorespace, HISTIGNORE) would read as the previous one.
    if (( __claude_notify_hn != __claude_notify_prev )) \
        || [[ ${HISTCONTROL-} != *ignore[sb]* && -z ${HISTIGNORE-} ]]; then
        # Through a file of our own rather than $(…): a command substitution forks, and with a
        # per-command threshold of 0 this runs after every command.
        if [[ -n $__claude_notify_hf ]] \
            && { HISTTIMEFORMAT= builtin history 1 >| "$__claude_notify_hf"; } 2>/dev/null; then
            IFS= read -r -d '' line < "$__claude_notify_hf" || :
            : >| "$__claude_notify_hf"
            line=${line%$'\n'}
        else
            line=$(HISTTIMEFORMAT= builtin history 1)
        fi
        [[ $line =~ $re ]] && cmd=${BASH_REMATCH[1]}
    fi
    w=${cmd#"${cmd%%[![:space:]]*}"}
    w=${w%%[[:space:]]*}
    if [[ -n $w && -n ${BASH_ALIASES[$w]+set} ]]; then
        exp=${BASH_ALIASES[$w]}${cmd#*"$w"}
    fi
    if (( $2 < __claude_notify_default )); then
        __claude_notify_override "$2" " ${cmd//[[:space:];|&()]/ } ${exp//[[:space:];|&()]/ } " \
            || return 0
    fi
    local d t
    printf -v d '%d.%06d' $(( $2 / 1000000 )) $(( $2 % 1000000 ))
    printf -v t '%d.%06d' $(( $3 / 1000000 )) $(( $3 % 1000000 ))
    ( builtin cd / && exec "${__claude_notify_argv[@]}" shell-done --shell=bash --status="$1" \
        --duration="$d" --started="$t" --cwd="$PWD" --cmd="$cmd" --expanded="$exp" \
        </dev/null >/dev/null 2>&1 & )
}

# Per-command thresholds below the default: a word match, a superset of Python's own rules.
__claude_notify_override() {
@OVERRIDES@
    return 1
}

if [[ ${PS0-} != *__claude_notify_t0* ]]; then
    PS0='${__claude_notify_nil[__claude_notify_t0=${EPOCHREALTIME/[.,]/},__claude_notify_prev=__claude_notify_hn,__claude_notify_hn=\!,0]-}'"${PS0-}"
fi
if [[ "${PROMPT_COMMAND[*]-}" != *__claude_notify_precmd* ]]; then
    if [[ -n ${PROMPT_COMMAND[@]+x} ]] && (( ${#PROMPT_COMMAND[@]} > 1 )); then
        PROMPT_COMMAND=(__claude_notify_precmd "${PROMPT_COMMAND[@]}")
    else
        PROMPT_COMMAND="__claude_notify_precmd${PROMPT_COMMAND:+$'\n'$PROMPT_COMMAND}"
    fi
fi
fi
