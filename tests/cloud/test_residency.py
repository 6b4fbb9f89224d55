"""Data residency with two real servers on loopback, EU and CN, each with its own database and
its own mail server, sharing one region directory: EU reads it as a folder, CN through an HTTP
file server over the same folder (the two kinds an operator may use).

What it proves: a sign-in (CLI, API, web) asked of the wrong region's server sends the person to
their region's server and leaves nothing about them in the wrong region's database or mail; new
accounts claim their region; a tampered directory cannot redirect anywhere but a configured
region, and an unreachable one is a clear refusal within its timeout, not a hang."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloud_kit import Mailbox, free_port, mail_text, wait_for
from conftest import _smtp
from fastapi.testclient import TestClient
from github_standin import Person, address, running
from relay_kit import CLI, Server, email, user_env
from sqlalchemy import select
from web_kit import browser_of

from claude_notify.cloud.server import residency
from claude_notify.cloud.server.db.models import User
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.errors import ConfigError


class _Quiet(SimpleHTTPRequestHandler):
    asked: list[str] = []  # noqa: RUF012 (the paths every directory server was asked for)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _Quiet.asked.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("region-directory")


@pytest.fixture(scope="module")
def folder_url(folder: Path) -> Iterator[str]:
    """The directory as a static file server (as an operator might publish it)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory, tls_ca: Any, folder: Path,
            folder_url: str, sqlite_template: Path) -> Iterator[dict[str, tuple[Server, Mailbox]]]:
    made: dict[str, tuple[Server, Mailbox, Path]] = {}
    with _smtp(tmp_path_factory.mktemp("smtp-eu"), tls_ca) as eu_box, \
            _smtp(tmp_path_factory.mktemp("smtp-cn"), tls_ca) as cn_box:
        for region, box in (("eu", eu_box), ("cn", cn_box)):
            db = tmp_path_factory.mktemp(f"db-{region}") / "server.db"
            db.write_bytes(sqlite_template.read_bytes())
            made[region] = (Server.make(f"sqlite:///{db}", box), box, db)
        urls = ",".join(f"{r}={s.url}" for r, (s, _, _) in made.items())
        for region, (server, _, _) in made.items():
            server.env.update({"CLAUDE_NOTIFY_SERVER_REGION": region,
                               "CLAUDE_NOTIFY_SERVER_REGION_URLS": urls,
                               "CLAUDE_NOTIFY_SERVER_REGION_DIRECTORY":
                                   str(folder) if region == "eu" else folder_url})
        try:
            for server, _, _ in made.values():
                server.start()
            yield {r: (s, b) for r, (s, b, _) in made.items()}
        finally:
            for server, _, _ in made.values():
                server.stop()


def database(server: Server) -> Path:
    return Path(server.env["DATABASE_URL"].removeprefix("sqlite:///"))


def traces(server: Server, address: str) -> list[str]:
    """Every row of ``server``'s database that mentions ``address``, table by table."""
    with sqlite3.connect(database(server)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [f"{table}: {row}" for table in tables
                for row in db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (its own tables)
                if address.lower() in repr(row).lower()]


def mails_to(box: Mailbox, address: str) -> int:
    return sum(address in m.rcpt_tos for m in list(box.messages))


def device(server: Server, address: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/auth/device", json={"email": address}, timeout=30)


def web_signin(server: Server, address: str) -> httpx.Response:
    return httpx.post(f"{server.url}/app/signin", data={"email": address}, timeout=30,
                      headers={"Origin": server.url})


# ------------------------------------------------------------------- the wrong region's server


def test_the_api_names_the_home_region_and_keeps_nothing(
        regions: dict[str, tuple[Server, Mailbox]], folder: Path) -> None:
    (eu, _), (cn, cn_box) = regions["eu"], regions["cn"]
    alice = email("alice")
    eu.admin("create-user", alice)
    assert (folder / residency.entry_name(alice)).read_text() == "eu\n"

    answer = device(cn, alice.upper())  # the address as typed: normalized before the lookup
    assert answer.status_code == 421, answer.text
    assert answer.json()["error"] == {
        "code": "wrong_region", "message": f"this account lives in region eu: sign in at {eu.url}",
        "details": [{"region": "eu", "server": eu.url}]}
    assert "location" not in answer.headers
    assert traces(cn, alice) == [] and mails_to(cn_box, alice) == 0
    # What crossed to the directory is the address's hash, nothing else about alice.
    assert f"/{residency.entry_name(alice)}" in _Quiet.asked
    assert not [path for path in _Quiet.asked if "@" in path or "%40" in path]
    assert device(eu, alice).status_code == 200  # at home, the sign-in starts


def test_cli_login_at_the_wrong_region_signs_in_at_home(
        regions: dict[str, tuple[Server, Mailbox]], tmp_path: Path) -> None:
    (eu, eu_box), (cn, cn_box) = regions["eu"], regions["cn"]
    alice = email("alice")
    eu.admin("create-user", alice)
    env = user_env(tmp_path / "home")
    err = tmp_path / "login.err"
    with err.open("wb") as errors:
        login = subprocess.Popen([*CLI, "login", "--email", alice, "--server", cn.url],
                                 env=env, stdout=subprocess.PIPE, stderr=errors,
                                 stdin=subprocess.DEVNULL)
    try:
        shown = wait_for(lambda: "type this code to finish: " in err.read_text() and
                         err.read_text(), timeout=60, what="the CLI to print its code")
        code = shown.split("type this code to finish: ")[1].split()[0]
        mail = wait_for(lambda: [m for m in list(eu_box.messages) if alice in m.rcpt_tos],
                        timeout=60, what="EU's sign-in mail")
        text = mail_text(mail[0])
        link = next(w for w in text.split() if "/v1/auth/approve?token=" in w)
        assert link.startswith(f"{eu.url}/")
        approved = httpx.post(f"{eu.url}/v1/auth/approve", timeout=30,
                              data={"token": link.split("token=")[1], "code": code})
        assert approved.status_code == 200, approved.text
        out, _ = login.communicate(timeout=60)
    finally:
        if login.poll() is None:
            login.kill()
            login.wait()
    assert login.returncode == 0, err.read_text()
    assert err.read_text().splitlines()[0] == \
        f"{alice}'s account is in region eu: signing in at {eu.url}"
    assert out.decode().startswith(f"logged in to {eu.url} as {alice} ")
    who = subprocess.run([*CLI, "whoami"], env=env, capture_output=True, text=True, timeout=60,
                         check=True)
    assert who.stdout.startswith(f"{alice} on {eu.url}: free plan")
    assert traces(cn, alice) == [] and mails_to(cn_box, alice) == 0


def test_web_signin_at_the_wrong_region_moves_on_to_its_page(
        regions: dict[str, tuple[Server, Mailbox]]) -> None:
    (eu, _), (cn, cn_box) = regions["eu"], regions["cn"]
    alice = email("alice")
    eu.admin("create-user", alice)
    page = web_signin(cn, alice)
    there = f"{eu.url}/app/signin?email={alice.replace('@', '%40')}"
    assert page.status_code == 200, page.text
    assert page.headers["refresh"] == f"0;url={there}"
    assert f'href="{there}"' in page.text and "region <b>eu</b>" in page.text
    home = httpx.get(there, timeout=30)
    assert home.status_code == 200 and f'value="{alice}"' in home.text
    assert traces(cn, alice) == [] and mails_to(cn_box, alice) == 0


def test_new_accounts_claim_their_region(regions: dict[str, tuple[Server, Mailbox]],
                                         folder: Path) -> None:
    """CN cannot write an http(s) directory: its entries are put there by the directory's owner
    (here, the shared folder behind it), as docs/deploy.md says."""
    (eu, eu_box), (cn, _) = regions["eu"], regions["cn"]
    bob = email("bob")
    (folder / residency.entry_name(bob)).write_text("cn\n")
    refused = subprocess.run([*CLI, "server", "create-user", bob], env=eu.env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == f"claude-notify: {bob} belongs to region cn: create it on {cn.url}\n"
    assert device(eu, bob).json()["error"]["details"] == [{"region": "cn", "server": cn.url}]
    assert traces(eu, bob) == []

    # An address no region knows signs up where it is asked, and EU claims it at once.
    carol = email("carol")
    started = device(eu, carol)
    assert started.status_code == 200, started.text
    mail = wait_for(lambda: [m for m in list(eu_box.messages) if carol in m.rcpt_tos],
                    timeout=60, what="the sign-up mail")
    link = next(w for w in mail_text(mail[0]).split() if "/v1/auth/approve?token=" in w)
    approved = httpx.post(f"{eu.url}/v1/auth/approve", timeout=30, data={
        "token": link.split("token=")[1], "code": started.json()["user_code"]})
    assert approved.status_code == 200, approved.text
    assert not (folder / residency.entry_name(carol)).exists()  # not before the account is
    token = httpx.post(f"{eu.url}/v1/auth/token", timeout=30,
                       json={"device_code": started.json()["device_code"]})
    assert token.status_code == 200, token.text
    assert (folder / residency.entry_name(carol)).read_text() == "eu\n"
    assert device(cn, carol).json()["error"]["details"] == [{"region": "eu", "server": eu.url}]


# ------------------------------------------------------------------------------------ attacks


@pytest.mark.parametrize("entry", ["https://evil.example/", "evil.example",
                                   "eu\nhttps://evil.example", "EU", "x" * 200, ""])
def test_a_tampered_directory_redirects_nowhere(
        regions: dict[str, tuple[Server, Mailbox]], folder: Path, tmp_path: Path,
        entry: str) -> None:
    """Only a configured region's URL can be a target: an entry is a known region code or the
    sign-in stops with the operator's problem (never a redirect, never a sign-up here)."""
    (cn, cn_box) = regions["cn"]
    victim = email("victim")
    (folder / residency.entry_name(victim)).write_text(entry)
    answer = device(cn, victim)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "region_unknown"
    assert "evil" not in answer.text and "location" not in answer.headers
    page = web_signin(cn, victim)
    assert page.status_code == 503 and "refresh" not in page.headers
    assert "evil" not in page.text and "region directory" in page.text
    login = subprocess.run([*CLI, "login", "--email", victim, "--server", cn.url],
                           env=user_env(tmp_path / "home"), capture_output=True, text=True,
                           timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert login.returncode == 1 and len(login.stderr.splitlines()) == 1, login.stderr
    assert login.stderr.startswith("claude-notify: the region directory's entry")
    assert traces(cn, victim) == [] and mails_to(cn_box, victim) == 0


def test_an_unknown_region_is_refused(regions: dict[str, tuple[Server, Mailbox]],
                                      folder: Path) -> None:
    (cn, _) = regions["cn"]
    someone = email("someone")
    (folder / residency.entry_name(someone)).write_text("us\n")
    answer = device(cn, someone)
    assert (answer.status_code, answer.json()["error"]) == (503, {
        "code": "region_unknown",
        "message": "this address belongs to region us, which this server does not know; ask "
                   "its operator"})


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def settings(directory: str, timeout: float = 1.0) -> Settings:
    return Settings(database_url="sqlite://", region="cn", region_urls=(
        "eu=https://eu.example.com", "cn=https://cn.example.cn"), region_directory=directory,
        region_directory_timeout_s=timeout).validate()


def test_an_unreachable_directory_is_a_clear_refusal_in_time(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(residency.ResidencyError, match=r"^the region directory cannot be "
                       r"reached \(ReadTimeout\); try again later$"):
        residency.home(settings(f"http://127.0.0.1:{silent_port}/"), "a@example.com")
    assert time.monotonic() - started < 5
    with pytest.raises(residency.ResidencyError, match=r"cannot be reached \(ConnectError\)"):
        residency.home(settings(f"http://127.0.0.1:{free_port()}/"), "a@example.com")


def test_a_directory_answers_only_with_its_own_entries(tmp_path: Path) -> None:
    """A redirect from the directory is not followed (it could point anywhere), an error is a
    refusal, a missing entry is "not known anywhere"."""
    answers = {"/redirect": (302, b"", {"Location": "https://evil.example/"}),
               "/broken": (500, b"oops", {})}

    class Handler(_Quiet):
        def do_GET(self) -> None:
            status, body, headers = answers.get(self.path.rsplit("/", 1)[0], (404, b"", {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with pytest.raises(residency.ResidencyError, match="answered HTTP 302"):
            residency.home(settings(f"{base}/redirect/"), "a@example.com")
        with pytest.raises(residency.ResidencyError, match="answered HTTP 500"):
            residency.home(settings(f"{base}/broken"), "a@example.com")
        assert residency.home(settings(f"{base}/nothing"), "a@example.com") is None
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert residency.home(settings(str(tmp_path)), "a@example.com") is None


def test_a_server_with_an_unreachable_directory_refuses_sign_in_promptly(
        tmp_path: Path, smtp_server: Mailbox, sqlite_template: Path, silent_port: int) -> None:
    db = tmp_path / "server.db"
    db.write_bytes(sqlite_template.read_bytes())
    server = Server.make(f"sqlite:///{db}", smtp_server,
                         CLAUDE_NOTIFY_SERVER_REGION="cn",
                         CLAUDE_NOTIFY_SERVER_REGION_DIRECTORY=f"http://127.0.0.1:{silent_port}/",
                         CLAUDE_NOTIFY_SERVER_REGION_DIRECTORY_TIMEOUT_S="1")
    server.env["CLAUDE_NOTIFY_SERVER_REGION_URLS"] = f"cn={server.url},eu=https://eu.example.com"
    server.start()
    try:
        started = time.monotonic()
        login = subprocess.run([*CLI, "login", "--email", "dan@example.com", "--server",
                                server.url], env=user_env(tmp_path / "home"),
                               capture_output=True, text=True, timeout=60, check=False,
                               stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        assert (login.returncode, login.stderr) == (1, "claude-notify: the region directory "
                                                       "cannot be reached (ReadTimeout); try "
                                                       "again later\n")
        assert took < 15, took  # a 1 s timeout and a CLI start, not a hang
        assert traces(server, "dan@example.com") == []
    finally:
        server.stop()


@pytest.mark.parametrize(("env", "error"), [
    ({"REGION": "eu"}, "server setting REGION_URLS=() must name this region (eu) too"),
    ({"REGION": "eu", "REGION_URLS": "eu=https://eu.example.com"},
     "server setting REGION_DIRECTORY=None is needed with REGION (a folder or an http(s):// "
     "URL)"),
    ({"REGION": "EU"}, "server setting REGION='EU' must be a lowercase code such as eu or cn"),
    ({"REGION": "eu", "REGION_URLS": "eu=javascript:alert(1)", "REGION_DIRECTORY": "/srv"},
     "server setting REGION_URLS=('eu=javascript:alert(1)',) 'javascript:alert(1)' must be an "
     "http(s):// URL without a query"),
    ({"REGION_DIRECTORY": "/srv"},
     "server setting REGION=None is needed with REGION_DIRECTORY and REGION_URLS"),
])
def test_settings_say_what_is_missing(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({f"CLAUDE_NOTIFY_SERVER_{k}": v for k, v in env.items()}).validate()
    assert str(raised.value) == error


def test_github_sign_up_does_not_open_another_regions_account(
        client: TestClient, runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    """GitHub hands over a verified address without asking the directory first: an address the
    directory puts in CN gets no account in EU; one it does not know gets one, and its entry."""
    with running() as github:
        runtime.settings = settings.replace(
            github_client_id=github.client_id, github_client_secret=github.client_secret,
            github_url=github.url, github_api_url=github.url, region="eu",
            region_urls=("eu=https://eu.example.com", "cn=https://cn.example.cn"),
            region_directory=str(tmp_path)).validate()
        for who, region in (("wei@example.com", "cn"), ("lena@example.com", None)):
            if region:
                (tmp_path / residency.entry_name(who)).write_text(f"{region}\n")
            github.person = Person(id=len(who), emails=[address(who)])
            b = browser_of(client)
            started = b.get("/app/signin/github")
            back = httpx.get(started.headers["location"], follow_redirects=False, timeout=10)
            done = b.get(back.headers["location"])
            with runtime.sessions() as db:
                made = db.scalar(select(User.email).where(User.email == who))
            if region:
                assert done.status_code == 403 and "does not open one" in done.text
                assert made is None
            else:
                assert done.status_code == 303 and made == who
                assert (tmp_path / residency.entry_name(who)).read_text() == "eu\n"
        assert github.violations == []


def test_region_entries_enters_the_accounts_a_deployment_already_has(
        tmp_path: Path, sqlite_template: Path) -> None:
    """Residency turned on for a deployment with accounts: ``server region-entries`` writes the
    missing entries once, lists an address another region holds, and, for an http(s)
    directory, prints the entries for its owner to publish."""
    db = tmp_path / "server.db"
    db.write_bytes(sqlite_template.read_bytes())
    folder = tmp_path / "directory"
    folder.mkdir()
    base = {**user_env(tmp_path / "home"), "DATABASE_URL": f"sqlite:///{db}"}

    def server(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "server", *args], env={**base, **env}, capture_output=True,
                              text=True, timeout=60, check=False)

    before = [email("old"), email("older"), email("twice")]
    for who in before:
        assert server("create-user", who).returncode == 0
    (folder / residency.entry_name(before[2])).write_text("cn\n")
    region = {"CLAUDE_NOTIFY_SERVER_REGION": "eu",
              "CLAUDE_NOTIFY_SERVER_REGION_URLS": "eu=https://eu.example.com,"
                                                  "cn=https://cn.example.cn",
              "CLAUDE_NOTIFY_SERVER_REGION_DIRECTORY": str(folder)}
    for _ in range(2):  # and again: nothing changes
        entered = server("region-entries", **region)
        assert entered.returncode == 1
        assert entered.stdout == "2 account(s) entered for region eu, 1 entered for another " \
                                 "region\n"
        assert entered.stderr == f"{before[2]}: the directory says region cn; left as it is\n"
        assert [(folder / residency.entry_name(w)).read_text() for w in before] == \
            ["eu\n", "eu\n", "cn\n"]

    published = server("region-entries", **{**region, "CLAUDE_NOTIFY_SERVER_REGION_DIRECTORY":
                                             "https://directory.example.com/regions/"})
    assert published.returncode == 0, published.stderr
    assert sorted(published.stdout.splitlines()) == sorted(
        f"{residency.entry_name(w)} eu" for w in before)

    off = server("region-entries")
    assert (off.returncode, off.stderr) == (
        2, "claude-notify: set CLAUDE_NOTIFY_SERVER_REGION (and its directory) first\n")


@pytest.fixture
def pointed() -> Iterator[None]:
    """The per-process count of wrong-region answers, fresh for the test and after it."""
    residency._pointed.clear()
    yield
    residency._pointed.clear()


def test_telling_where_accounts_live_is_limited_per_client(
        client: TestClient, runtime: Runtime, settings: Settings, tmp_path: Path,
        pointed: None) -> None:
    """A wrong-region answer says an address has an account (a same-region sign-in never
    says): past the per-IP sign-in limit, the API and the web page answer 429 instead, and
    sign-ins of this region's own addresses are still counted as before."""
    runtime.settings = settings.replace(
        region="eu", region_urls=("eu=https://eu.example.com", "cn=https://cn.example.cn"),
        region_directory=str(tmp_path), login_per_ip_per_hour=3).validate()
    probes = [f"probe{i}@example.com" for i in range(4)]
    for probe in probes:
        (tmp_path / residency.entry_name(probe)).write_text("cn\n")
    for probe in probes[:2]:
        assert client.post("/v1/auth/device", json={"email": probe}).status_code == 421
    page = client.post("/app/signin", data={"email": probes[2]})
    assert page.status_code == 200 and "refresh" in page.headers
    limited = client.post("/v1/auth/device", json={"email": probes[3]})
    assert (limited.status_code, limited.json()["error"]["message"]) == (
        429, "too many sign-in requests; try again later")
    again = client.post("/app/signin", data={"email": probes[3]})
    assert again.status_code == 429 and "refresh" not in again.headers
    assert residency.may_point("192.0.2.1", 3)  # another client is not held back


def test_the_limit_is_a_sliding_hour(pointed: None) -> None:
    assert [residency.may_point("198.51.100.7", 3, now=t) for t in (0, 1, 2, 3)] == \
        [True, True, True, False]
    assert not residency.may_point("198.51.100.7", 3, now=3600)
    assert residency.may_point("198.51.100.7", 3, now=3600.5)  # the first has aged out
