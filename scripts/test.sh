#!/usr/bin/env bash
# The one test command: set up everything the suite needs on a fresh Debian machine, then run
# ruff, mypy (Linux, macOS and Windows views) and pytest. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(xvfb dbus-x11 dunst libnotify-bin kitty tmux zsh fish x11-utils x11-apps hyperfine wrk strace
              postgresql redis-server chromium zbar-tools
              prometheus)  # promtool checks deploy/prometheus/alerts.yml

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "== missing Debian packages (install them as root): ${need_apt[*]}" >&2
  fi
fi

# kubectl renders deploy/k8s (`kubectl kustomize`, offline). Machines may come with one (not from
# Debian, so not in APT_PACKAGES: both ship /usr/bin/kubectl); else Debian's kubernetes-client.
if ! command -v kubectl >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "== installing kubectl (kubernetes-client)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client \
    >/dev/null
fi

# PostgreSQL and Redis on 127.0.0.1, started when installed but not running.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "== starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  # Tests connect as postgres without a password over TCP, as on the developers' machines.
  su postgres -c "psql -qtAc \"ALTER USER postgres PASSWORD NULL\"" >/dev/null 2>&1 || true
  hba=$(su postgres -c "psql -qtAc 'SHOW hba_file'" 2>/dev/null || true)
  if [[ -n "$hba" ]] && ! grep -qE '^host\s+all\s+all\s+127.0.0.1/32\s+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    su postgres -c "psql -qtAc 'SELECT pg_reload_conf()'" >/dev/null
  fi
fi
if command -v redis-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "== starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

# The real Claude Code CLI for the end-to-end hook tests (from the npm registry, cached).
if ! command -v npm >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "== installing npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
if command -v npm >/dev/null; then
  CLAUDE_CLI=$(bash scripts/install_claude_cli.sh) && export CLAUDE_CLI
fi

# The project and its tools in a venv of its own.
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=25.1" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[server]" --group dev 2>&1 | grep -v "^WARNING: Location" || true

echo "== ruff"
.venv/bin/ruff check claude_notify tests scripts examples
echo "== mypy (linux, darwin, win32)"
for platform in linux darwin win32; do
  .venv/bin/mypy --platform "$platform" claude_notify
done
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
