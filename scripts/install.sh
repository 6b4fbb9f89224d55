#!/usr/bin/env bash
# The one-line installer: install claude-notify with pipx from a wheel, a checkout or a pip URL.
#
# "claude-notify" on PyPI is another project, so this never installs by name: it installs the wheel,
# checkout or URL it is given, or the checkout it sits in. Safe to run again: pipx install --force
# replaces what is there (an upgrade when the source is newer). See docs/install.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh [--server] [--python PYTHON] [SOURCE]

Installs the claude-notify command with pipx (installing pipx first when it is missing).

SOURCE is a built wheel (claude_notify-*.whl), a checkout of the project, or a pip URL such as
git+https://HOST/OWNER/claude-notify.git. Without SOURCE: the checkout this script sits in.

  --server         also install the [server] extra (the self-hosted server and its workers)
  --python PYTHON  the Python to use (3.10 or newer); default: $PYTHON, else python3
  -h, --help       show this help

Running it again reinstalls (and so upgrades) the same way; nothing else changes.
EOF
}

say() { printf 'claude-notify install: %s\n' "$*"; }
die() { printf 'claude-notify install: error: %s\n' "$*" >&2; exit 1; }

extra=""
python="${PYTHON:-}"
source_arg=""
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --server) extra="[server]" ;;
    --python) (($# >= 2)) || die "--python needs a value"; python="$2"; shift ;;
    --python=*) python="${1#--python=}" ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "$source_arg" ]] || die "one SOURCE only (got $source_arg and $1)"; source_arg="$1" ;;
  esac
  shift
done

# --- Python >= 3.10 ------------------------------------------------------------------------------
if [[ -z "$python" ]]; then
  python=$(command -v python3 || command -v python || true)
  [[ -n "$python" ]] || die "no python3 on PATH; install Python 3.10 or newer, or pass --python"
fi
python_path=$(command -v "$python" || true)
[[ -n "$python_path" ]] || die "the Python '$python' was not found; pass --python /path/to/python3"
# The probe is Python 2 syntax too, so even a very old python answers with its version.
version=$("$python_path" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' \
          2>/dev/null || true)
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.[0-9]+$ ]] \
  || die "$python_path does not run as a Python (it printed '${version:0:60}')"
if ((BASH_REMATCH[1] < 3 || (BASH_REMATCH[1] == 3 && BASH_REMATCH[2] < 10))); then
  die "claude-notify needs Python 3.10 or newer, but $python_path is Python $version;" \
      "install a newer Python and pass it with --python"
fi
say "Python $version at $python_path"

# --- the source ----------------------------------------------------------------------------------
# scripts/install.sh inside a checkout; read from a pipe (curl | bash) it has no file, no checkout.
here=""
if [[ -n "${BASH_SOURCE[0]:-}" && -f "${BASH_SOURCE[0]}" ]]; then
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fi
if [[ -z "$source_arg" ]]; then
  [[ -n "$here" && -f "$here/../pyproject.toml" && -d "$here/../claude_notify" ]] \
    || die "not inside a claude-notify checkout: give a wheel, a checkout or a git+https URL"
  source_arg=$(cd "$here/.." && pwd)
elif [[ -e "$source_arg" ]]; then
  # pipx (and pip) take local paths as paths only when they look like one.
  source_arg=$(cd "$(dirname "$source_arg")" && pwd)/$(basename "$source_arg")
  if [[ -d "$source_arg" ]]; then
    [[ -f "$source_arg/pyproject.toml" ]] || die "$source_arg is not a checkout (no pyproject.toml)"
  elif [[ "$source_arg" != *.whl ]]; then
    die "$source_arg is neither a wheel (.whl) nor a checkout"
  fi
elif [[ "$source_arg" != *://* ]]; then
  die "$source_arg does not exist (and is not a URL)"
fi
spec="$source_arg$extra"
if [[ "$source_arg" == *://* && -n "$extra" ]]; then
  spec="claude-notify$extra @ $source_arg"  # a URL takes its extras in PEP 508 form
fi

# --- pipx ----------------------------------------------------------------------------------------
# Without pipx we do not `pip install --user pipx`: on Debian, Ubuntu, Homebrew and other PEP 668
# ("externally managed") Pythons that is refused, and elsewhere it writes into the user's site
# packages. A private venv always works where pipx itself can work (pipx needs venv for every app
# anyway), touches nothing else, and is removed with one rm -r. Its pipx is reused on later runs.
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
pipx_venv="$data_home/claude-notify/pipx-venv"
if command -v pipx >/dev/null 2>&1; then
  pipx=("$(command -v pipx)")
  say "pipx: ${pipx[0]}"
elif "$python_path" -m pipx --version >/dev/null 2>&1; then
  pipx=("$python_path" -m pipx)
  say "pipx: $python_path -m pipx"
elif [[ -x "$pipx_venv/bin/pipx" ]] && "$pipx_venv/bin/pipx" --version >/dev/null 2>&1; then
  pipx=("$pipx_venv/bin/pipx")
  say "pipx: ${pipx[0]} (installed by an earlier run)"
else
  say "pipx not found: installing it into its own venv at $pipx_venv"
  rm -rf "$pipx_venv"
  mkdir -p "$(dirname "$pipx_venv")"
  "$python_path" -m venv "$pipx_venv" >/dev/null 2>&1 \
    || die "$python_path cannot create a venv (on Debian/Ubuntu: sudo apt install python3-venv," \
           "or install pipx itself: sudo apt install pipx / brew install pipx), then run this again"
  "$pipx_venv/bin/python" -m pip install --quiet --disable-pip-version-check pipx >&2 \
    || die "could not install pipx into $pipx_venv (see pip's message above)"
  pipx=("$pipx_venv/bin/pipx")
  say "pipx: ${pipx[0]}"
fi

# --- install -------------------------------------------------------------------------------------
previous=$("${pipx[@]}" list --short 2>/dev/null | awk '$1 == "claude-notify" {print $2}' || true)
if [[ -n "$previous" ]]; then
  say "claude-notify $previous is already installed: reinstalling it from $spec"
else
  say "installing claude-notify from $spec"
fi
# --force: replace an existing install (plain pipx install refuses, even to add an extra).
# --python: the app's venv uses the Python checked above, whichever Python runs pipx.
# pipx's own progress and PATH advice go to a log, shown only when it fails: we say it below.
log=$(mktemp "${TMPDIR:-/tmp}/claude-notify-install.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! "${pipx[@]}" install --force --python "$python_path" "$spec" >"$log" 2>&1; then
  cat "$log" >&2
  die "pipx install failed (its output is above)"
fi

bin_dir=$("${pipx[@]}" environment --value PIPX_BIN_DIR 2>/dev/null || true)
bin_dir="${bin_dir:-${PIPX_BIN_DIR:-$HOME/.local/bin}}"
command_path="$bin_dir/claude-notify"
installed=$("$command_path" --version 2>/dev/null) \
  || die "pipx said it installed claude-notify, but $command_path --version fails"
installed="${installed##* }"  # "claude-notify, version X" -> X
if [[ -n "$previous" ]]; then
  say "reinstalled: claude-notify $installed${extra:+ with $extra} (was $previous)"
else
  say "installed: claude-notify $installed${extra:+ with $extra}"
fi
say "the command: $command_path"
case ":$PATH:" in
  *":$bin_dir:"*) say "$bin_dir is on your PATH: run 'claude-notify --help' to start" ;;
  *) say "$bin_dir is NOT on your PATH: run '${pipx[*]} ensurepath' and open a new shell," \
         "or add: export PATH=\"$bin_dir:\$PATH\"" ;;
esac
