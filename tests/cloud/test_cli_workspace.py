"""``claude-notify workspace list|switch|invite|members``, ``login --workspace`` and ``whoami``
against the real server (a subprocess, SQLite and PostgreSQL), as two people would use them:
the owner of a Pro workspace invites a colleague from the terminal, the mailed link (a real
SMTP server) is accepted, the colleague's machine signs in straight into the team (the e-mailed
device login) and reports a task the owner then sees.

Every refusal is one line on stderr and a non-zero exit, never a traceback; a workspace name
holding terminal escape sequences reaches the terminal escaped.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from cloud_kit import Mailbox, mail_text, wait_for
from relay_kit import CLI, Server, cli, email, user_env

HOSTILE = "team\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\nsecond line"
"""A workspace name that would retitle the window, clear the screen, colour and reverse the
text and forge a second line, if printed raw."""
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.fixture(scope="module")
def shared_server(module_db_url: str, module_smtp: Mailbox) -> Iterator[Server]:
    srv = Server.make(module_db_url, module_smtp)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server.running()


def _token_login(server: Server, home: Path, plan: str = "pro",
                 who: str = "owner") -> tuple[dict[str, str], str, str]:
    """A new account logged in with its account token: its CLI env, address and token."""
    address = email(who)
    token = server.admin("create-user", address, "--plan", plan)
    env = user_env(home)
    cli(["login", "--server", server.url, "--token"], env, stdin=token.encode() + b"\n")
    return env, address, token


def _api(server: Server, token: str, method: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"},
                         timeout=10, **kw)  # type: ignore[arg-type]


def _one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """A refusal as the user sees it: non-zero, one line on stderr, no traceback."""
    err = result.stderr.decode()
    assert result.returncode != 0, result
    assert err.startswith("claude-notify: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _invite_link(box: Mailbox, address: str, seen: int) -> str:
    mails = wait_for(lambda: (m := [mail_text(e) for e in box.messages if address in e.rcpt_tos])
                     [seen:] and m, timeout=30, what=f"the invite mail to {address}")
    return next(w for w in mails[-1].split() if "/app/invite?token=" in w)


def _accept(server: Server, link: str) -> None:
    """Press Join on the invite's page (the page itself joins nobody)."""
    token = link.split("token=", 1)[1]
    assert httpx.get(link, timeout=10).status_code == 200
    joined = httpx.post(f"{server.url}/app/invite", data={"token": token},
                        headers={"Origin": server.url}, timeout=10)
    assert joined.status_code == 303, joined.text


def _mails_to(box: Mailbox, address: str) -> int:
    return sum(address in m.rcpt_tos for m in box.messages)


def _device_login(server: Server, env: dict[str, str], box: Mailbox, address: str,
                  *extra: str) -> subprocess.CompletedProcess[bytes]:
    """``claude-notify login --email`` as a person does it: the link in the mail is opened and
    the code the terminal shows is typed."""
    seen = _mails_to(box, address)
    with subprocess.Popen([*CLI, "login", "--server", server.url, "--email", address, *extra],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as login:
        assert login.stderr is not None
        said = login.stderr.readline().decode()
        code = said.rsplit(" ", 1)[1].strip()
        mails = wait_for(lambda: (m := [mail_text(e) for e in box.messages
                                        if address in e.rcpt_tos])[seen:] and m,
                         timeout=30, what=f"the sign-in mail to {address}")
        link = next(w for w in mails[-1].split() if "/v1/auth/approve?" in w)
        confirmed = httpx.post(f"{server.url}/v1/auth/approve",
                               data={"token": link.split("token=")[1], "code": code}, timeout=10)
        assert confirmed.status_code == 200, confirmed.text
        out, err = login.communicate(timeout=60)
    return subprocess.CompletedProcess(login.args, login.returncode, out, said.encode() + err)


@pytest.fixture
def team(server: Server, module_smtp: Mailbox, tmp_path: Path) -> dict[str, str]:
    """A Pro owner logged in on their machine, and a colleague with a free account of their own
    (its account token made by the operator), invited from the owner's terminal, who joined
    through the mailed link."""
    owner_env, owner, owner_token = _token_login(server, tmp_path / "owner")
    colleague = email("colleague")
    colleague_token = server.admin("create-user", colleague, "--plan", "free")
    seen = _mails_to(module_smtp, colleague)
    invited = cli(["workspace", "invite", colleague], owner_env)
    said = invited.stdout.decode()
    assert said.startswith(f"invited {colleague} to {owner} as member: the link is mailed"), said
    _accept(server, _invite_link(module_smtp, colleague, seen))
    return {"owner": owner, "owner_token": owner_token, "colleague": colleague,
            "colleague_token": colleague_token,
            "owner_home": str(tmp_path / "owner"), "colleague_home": str(tmp_path / "colleague")}


def test_invite_join_then_log_in_straight_into_the_team(
    server: Server, module_smtp: Mailbox, team: dict[str, str],
) -> None:
    owner_env = user_env(Path(team["owner_home"]))
    members = cli(["workspace", "members"], owner_env).stdout.decode().splitlines()
    assert members[0] == f"{team['owner']}: 2 of 5 seats"
    assert [line.split()[0] for line in members[1:]] == ["owner", "member"]
    assert members[2].endswith(team["colleague"])

    # The colleague's machine signs in by the e-mailed link (a machine's login: events and
    # tasks only, no account token) and straight into the team's workspace, by name.
    env = user_env(Path(team["colleague_home"]))
    login = _device_login(server, env, module_smtp, team["colleague"],
                          "--workspace", team["owner"])
    assert login.returncode == 0, login.stderr
    out = login.stdout.decode().splitlines()
    assert out[0].startswith(f"logged in to {server.url} as {team['colleague']}")
    assert out[1] == f"acting in workspace {team['owner']} (member)"
    whoami = cli(["whoami"], env).stdout.decode().splitlines()
    assert whoami[0] == f"{team['colleague']} on {server.url}: pro plan"  # the team's plan
    assert whoami[1].startswith(f"workspace {team['owner']}, role member (2 of 5 seats; id ")
    listed = cli(["workspace", "list"], env).stdout.decode().splitlines()[1:]
    [here] = [line for line in listed if line.startswith("*")]
    assert here.endswith(team["owner"]) and " member " in here
    [personal] = [line for line in listed if not line.startswith("*")]
    assert personal.endswith(team["colleague"]) and " owner  free " in personal

    # Their machine's next task reports into the team: the owner sees it.
    assert cli(["run", "--", "true", "team-task"], env).returncode == 0
    cli(["sync"], env)
    tasks = _api(server, team["owner_token"], "GET", "/v1/tasks").json()["items"]
    assert [t["cmd"] for t in tasks] == ["true team-task"]

    # Removed from the team, the machine's token for it stops at once: one line saying to
    # sign in again (which lands in their own workspace).
    members = _api(server, team["owner_token"], "GET", "/v1/workspace/members").json()
    their_id = next(m["user_id"] for m in members if m["email"] == team["colleague"])
    assert _api(server, team["owner_token"], "DELETE",
                f"/v1/workspace/members/{their_id}").status_code == 204
    for args in (["workspace", "list"], ["whoami"], ["workspace", "switch", team["owner"]]):
        assert "claude-notify login" in _one_line_error(cli(args, env, check=False))


def test_switch_back_and_forth_keeps_the_old_token_alive(
    server: Server, team: dict[str, str], tmp_path: Path,
) -> None:
    env, _, _ = _token_login(server, tmp_path / "u")  # a third person: no team of theirs
    refused = cli(["workspace", "switch", team["owner"]], env, check=False)
    assert "you are in no workspace named" in _one_line_error(refused)
    assert refused.returncode == 2

    # The colleague, logged in with their account token.
    env = user_env(Path(team["colleague_home"]))
    colleague_token = team["colleague_token"]
    cli(["login", "--server", server.url, "--token"], env,
        stdin=colleague_token.encode() + b"\n")
    listed = cli(["workspace", "list", "--json"], env).stdout
    workspaces = {w["name"]: w for w in json.loads(listed)}
    assert workspaces[team["colleague"]]["current"] and not workspaces[team["owner"]]["current"]
    team_id = workspaces[team["owner"]]["id"]

    # By a unique start of its id, then by name in another case.
    switched = cli(["workspace", "switch", team_id[:8]], env).stdout.decode()
    assert switched.startswith(f"switched to {team['owner']} (member) (token kept in the ")
    assert "already in" in cli(["workspace", "switch", team["owner"].upper()], env).stdout.decode()
    here = _api(server, colleague_token, "GET", "/v1/workspace")
    assert here.status_code == 200 and here.json()["name"] == team["colleague"]  # not revoked
    back = cli(["workspace", "switch", team["colleague"]], env).stdout.decode()
    assert back.startswith(f"switched to {team['colleague']} (owner)")
    assert cli(["whoami"], env).stdout.decode().splitlines()[1].startswith(
        f"workspace {team['colleague']}, role owner")


def test_refusals_are_one_line(server: Server, team: dict[str, str], tmp_path: Path,
                               module_smtp: Mailbox) -> None:
    nobody = user_env(tmp_path / "nobody")
    for args in (["workspace", "list"], ["workspace", "members"], ["workspace", "switch", "x"],
                 ["workspace", "invite", "a@example.com"]):
        assert "not logged in" in _one_line_error(cli(args, nobody, check=False))

    free_env, _, _ = _token_login(server, tmp_path / "free", plan="free", who="free")
    refused = _one_line_error(cli(["workspace", "invite", email("x")], free_env, check=False))
    assert "a free workspace cannot invite" in refused and "Pro" in refused

    # The colleague (a member) may not invite; a bad address is the server's one line.
    env = user_env(Path(team["colleague_home"]))
    login = _device_login(server, env, module_smtp, team["colleague"],
                          "--workspace", team["owner"])
    assert login.returncode == 0, login.stderr
    refused = _one_line_error(cli(["workspace", "invite", email("y")], env, check=False))
    assert "this needs an admin of the workspace (you are member)" in refused
    # The owner's machine signed in without --manage reads, but does not run, the workspace.
    owners_laptop = user_env(tmp_path / "owners-laptop")
    assert _device_login(server, owners_laptop, module_smtp, team["owner"]).returncode == 0
    assert "2 of 5 seats" in cli(["workspace", "members"], owners_laptop).stdout.decode()
    refused = _one_line_error(cli(["workspace", "invite", email("m")], owners_laptop,
                                  check=False))
    assert "channels:write" in refused and "claude-notify login --manage" in refused
    owner_env = user_env(Path(team["owner_home"]))
    bad = _one_line_error(cli(["workspace", "invite", "not-an-address"], owner_env, check=False))
    assert "HTTP" not in bad
    wrong = cli(["workspace", "invite", email("z"), "--role", "owner"], owner_env, check=False)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr.decode()

    # login --workspace naming none of theirs: the login stands, the refusal says so.
    again = _device_login(server, user_env(tmp_path / "again"), module_smtp, team["colleague"],
                          "--workspace", "no-such-team")
    assert again.returncode == 2  # (the device flow's own lines come first on stderr)
    [err] = [line for line in again.stderr.decode().splitlines() if "claude-notify:" in line]
    assert "Traceback" not in again.stderr.decode()
    assert "logged in, but still in the workspace" in err and "no-such-team" in err
    assert again.stdout.decode().startswith("logged in to ")


def test_an_unreachable_server_is_one_line(server: Server, tmp_path: Path) -> None:
    env, _, _ = _token_login(server, tmp_path / "u")
    server.stop()
    for args in (["workspace", "list"], ["workspace", "switch", "x"], ["whoami"],
                 ["workspace", "members"], ["workspace", "invite", email("x")]):
        assert "cannot reach" in _one_line_error(cli(args, env, check=False))


def test_a_hostile_workspace_name_is_printed_escaped(
    server: Server, team: dict[str, str], module_db_url: str, module_smtp: Mailbox,
) -> None:
    engine = sqlalchemy.create_engine(module_db_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE workspaces SET name = :n WHERE name = :o"),
                     {"n": HOSTILE, "o": team["owner"]})
    engine.dispose()
    owner_env = user_env(Path(team["owner_home"]))
    env = user_env(Path(team["colleague_home"]))
    login = _device_login(server, env, module_smtp, team["colleague"],
                          "--workspace", "team")  # no workspace is named just "team"
    assert login.returncode != 0
    shown = {
        "list": cli(["workspace", "list"], owner_env).stdout,
        "members": cli(["workspace", "members"], owner_env).stdout,
        "whoami": cli(["whoami"], owner_env).stdout,
        "invite": cli(["workspace", "invite", email("h")], owner_env).stdout,
        "switch": cli(["workspace", "switch", _id_of(owner_env, HOSTILE)], env).stdout,
        "whoami2": cli(["whoami"], env).stdout,
    }
    escaped = r"team\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\x0asecond line"
    for what, out in shown.items():
        text = out.decode()
        assert not any(c in text for c in RAW), (what, text)
        assert escaped in text, (what, text)
        assert not any(line.startswith("second line") for line in text.splitlines()), what


def _id_of(env: dict[str, str], name: str) -> str:
    items = json.loads(cli(["workspace", "list", "--json"], env).stdout)
    return str(next(w["id"] for w in items if w["name"] == name))


def test_tasks_spooled_before_a_switch_report_where_they_ran(
    server: Server, team: dict[str, str],
) -> None:
    env = user_env(Path(team["colleague_home"]))
    cli(["login", "--server", server.url, "--token"], env,
        stdin=team["colleague_token"].encode() + b"\n")
    server.stop()
    assert cli(["run", "--", "true", "ran-at-home"], env).returncode == 0
    wait_for(lambda: "2 waiting" in cli(["status"], env).stdout.decode(),
             what="the task's registration and event spooled")
    server.running()
    cli(["workspace", "switch", team["owner"]], env)
    assert "0 waiting" in cli(["status"], env).stdout.decode()
    home = _api(server, team["colleague_token"], "GET", "/v1/tasks").json()["items"]
    assert [t["cmd"] for t in home] == ["true ran-at-home"]
    assert _api(server, team["owner_token"], "GET", "/v1/tasks").json()["items"] == []


def test_a_name_never_captures_what_was_meant_as_an_id() -> None:
    """Names are typed by whoever made a workspace: one named like the start of another's id
    makes that start ambiguous rather than winning; names differing only in case need the
    exact case."""
    from claude_notify.commands.workspace import resolve
    from claude_notify.errors import UsageError

    mine = {"id": "aaaa1111-0000-4000-8000-000000000000", "name": "me@example.com"}
    trap = {"id": "bbbb2222-0000-4000-8000-000000000000", "name": "aaaa1111"}
    upper = {"id": "cccc3333-0000-4000-8000-000000000000", "name": "Team"}
    lower = {"id": "dddd4444-0000-4000-8000-000000000000", "name": "team"}
    known = [mine, trap, upper, lower]
    assert resolve(known, mine["id"]) is mine
    assert resolve(known, "ME@example.com") is mine
    assert resolve(known, "Team") is upper and resolve(known, "team") is lower
    assert resolve(known, "cccc") is upper
    for given in ("aaaa1111", "TEAM", "aaa", "", "nope"):
        with pytest.raises(UsageError):
            resolve(known, given)
