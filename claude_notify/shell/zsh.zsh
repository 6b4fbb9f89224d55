# claude-notify shell integration for zsh: eval "$(claude-notify shell-init zsh)"
# Settings are baked in below: eval again after changing shell.threshold or shell.commands.
# The setup runs in an anonymous function under zsh's own options, whatever the user's are.
if [[ -o interactive ]]; then () {
emulate -L zsh
zmodload zsh/datetime 2>/dev/null || return 0
typeset -ga __claude_notify_argv=(@ARGV@)
typeset -gi __claude_notify_min=@MIN_US@ __claude_notify_default=@DEFAULT_US@
typeset -g __claude_notify_t0= __claude_notify_cmd= __claude_notify_exp=

__claude_notify_preexec() {
    emulate -L zsh
    __claude_notify_cmd=${1:-$3} __claude_notify_exp=$3
    __claude_notify_t0=$(( epochtime[1] * 1000000 + epochtime[2] / 1000 ))
}

# First of the precmd hooks: arithmetic only, unless the command ran long enough to matter.
__claude_notify_precmd() {
    local s=$?
    emulate -L zsh
    [[ -n $__claude_notify_t0 ]] || return $s
    local -i t0=$__claude_notify_t0
    local -i el=$(( epochtime[1] * 1000000 + epochtime[2] / 1000 - t0 ))
    __claude_notify_t0=
    (( el >= __claude_notify_min )) && __claude_notify_done $s $el $t0
    return $s
}

__claude_notify_done() {
    local cmd=$__claude_notify_cmd exp=$__claude_notify_exp
    [[ $exp == $cmd ]] && exp=
    if (( $2 < __claude_notify_default )); then
        __claude_notify_override $2 " ${cmd//[[:space:];|&()]/ } ${exp//[[:space:];|&()]/ } " \
            || return 0
    fi
    local d t
    printf -v d '%d.%06d' $(( $2 / 1000000 )) $(( $2 % 1000000 ))
    printf -v t '%d.%06d' $(( $3 / 1000000 )) $(( $3 % 1000000 ))
    ( builtin cd -q / && exec $__claude_notify_argv shell-done --shell=zsh --status=$1 \
        --duration=$d --started=$t --cwd=$PWD --cmd=$cmd --expanded=$exp \
        </dev/null >/dev/null 2>&1 & )
}

# Per-command thresholds below the default: a word match, a superset of Python's own rules.
__claude_notify_override() {
@OVERRIDES@
    return 1
}

autoload -Uz add-zsh-hook
add-zsh-hook preexec __claude_notify_preexec
precmd_functions=(__claude_notify_precmd ${precmd_functions:#__claude_notify_precmd})
}; fi
