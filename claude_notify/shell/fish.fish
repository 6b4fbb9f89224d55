# claude-notify shell integration for fish: claude-notify shell-init fish | source
# Settings are baked in below: source it again after changing shell.threshold or shell.commands.
if status is-interactive
    set -g __claude_notify_argv @ARGV@

    # fish times every command itself ($CMD_DURATION, ms): nothing to do before it runs.
    function __claude_notify_postexec --on-event fish_postexec
        set -l s $status
        set -l el $CMD_DURATION
        string length -q -- (string trim -- $argv[1]); or return $s
        test "$el" -ge @MIN_MS@ 2>/dev/null; or return $s
        if test $el -lt @DEFAULT_MS@
            set -l words " "(string replace -ra -- '[\s;|&()]+' ' ' $argv[1])" "
            __claude_notify_override $el "$words"; or return $s
        end
        set -l d (math --scale=3 $el / 1000)
        /bin/sh -c 'cd / && exec "$@" </dev/null >/dev/null 2>&1 &' sh $__claude_notify_argv \
            shell-done --shell=fish --status=$s --duration=$d --cwd=$PWD --cmd=$argv[1]
        return $s
    end

    # Per-command thresholds below the default: a word match, a superset of Python's own rules.
    function __claude_notify_override
@OVERRIDES@
        return 1
    end
end
