"""Signing in with GitHub, through the real app and a GitHub stand-in on 127.0.0.1 that holds the
server to GitHub's contract (``github_standin``), on SQLite and PostgreSQL.

The attacks first: an unverified address (even one an account has) never signs in or links, a
callback this browser did not start (another browser's, a forged or missing state, a replay, an
expired flow) does nothing, and a code issued to another flow is useless. Then the ways in: a
verified primary address makes or finds the account, GitHub's id keeps it when the address
changes, the operator's sign-up rules hold, GitHub being down is a page, not a traceback, and
deleting the account takes its link with it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cloud_kit import Account, Mailbox, free_port
from fastapi.testclient import TestClient
from github_standin import GitHubStandIn, Person, address, running
from sqlalchemy import func, select, update
from web_kit import LOCAL, browser_of

from claude_notify.cloud.server.db.models import User
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.web.github import challenge
from claude_notify.cloud.server.web.models import WebIdentity, WebOAuthState, WebSession
from claude_notify.errors import ConfigError
from claude_notify.events import utcnow

FLOW_COOKIE = "claude_notify_github"
SESSION_COOKIE = "claude_notify_session"


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    with running() as standin:
        yield standin
        assert standin.violations == []  # the server kept to GitHub's contract throughout


@pytest.fixture
def settings(settings: Settings, github: GitHubStandIn) -> Settings:
    return settings.replace(github_client_id=github.client_id,
                            github_client_secret=github.client_secret,
                            github_url=github.url, github_api_url=github.url).validate()


def _start(b: TestClient) -> str:
    """Press "Sign in with GitHub": the authorize URL; ``b`` now holds the flow's cookie."""
    started = b.get("/app/signin/github")
    assert started.status_code == 303, started.text
    return started.headers["location"]


def _approve(authorize_url: str) -> str:
    """The browser at GitHub, which approves: the callback URL it is sent back to."""
    back = httpx.get(authorize_url, follow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    return back.headers["location"]


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _with(url: str, **changes: str | None) -> str:
    """``url`` with some query parameters replaced (or dropped, for ``None``)."""
    query = {**_query(url), **changes}
    kept = {k: v for k, v in query.items() if v is not None}
    return urlsplit(url)._replace(query=urlencode(kept)).geturl()


def _sign_in(b: TestClient) -> httpx.Response:
    """The whole flow in browser ``b``: the callback's answer."""
    return b.get(_approve(_start(b)))


def _signed_in_as(b: TestClient) -> str | None:
    """The address of the account ``b`` is signed in to, as its pages show it, if any."""
    page = b.get("/app/tasks")
    if page.status_code != 200:
        return None
    who = re.search(r'class="who" href="/app/account">([^<]+)<', page.text)
    assert who is not None, page.text
    return who.group(1)


def _count(runtime: Runtime, what: type, *where: object) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(what).where(*where)) or 0)


def _identities(runtime: Runtime) -> list[tuple[str, str, str]]:
    with runtime.sessions() as session:
        rows = session.execute(select(WebIdentity.provider, WebIdentity.subject, User.email)
                               .join(User, User.id == WebIdentity.user_id)).all()
        return sorted((p, s, e) for p, s, e in rows)


def _user_id(runtime: Runtime, subject: str) -> uuid.UUID | None:
    with runtime.sessions() as session:
        return session.scalar(select(WebIdentity.user_id).where(
            WebIdentity.provider == "github", WebIdentity.subject == subject))


def _refused(answer: httpx.Response, b: TestClient, why: str) -> None:
    """A clear page saying ``why``, no session started, the browser still signed out."""
    assert answer.status_code == 403, answer.text
    assert why in answer.text and "Traceback" not in answer.text
    assert SESSION_COOKIE not in (answer.headers.get("set-cookie") or "")
    assert b.get("/app/tasks").status_code == 303


# -- an address GitHub has not verified ------------------------------------------------------


def test_an_unverified_primary_address_is_refused_and_nothing_is_made(
    client: TestClient, runtime: Runtime, github: GitHubStandIn
) -> None:
    github.person = Person(id=1001, email=None, emails=[
        address("new@example.com", verified=False),
        address("other@example.com", primary=False, verified=True)])  # not the primary: unused
    b = browser_of(client)
    _refused(_sign_in(b), b, "no verified primary e-mail address")
    assert _count(runtime, User) == 0 and _identities(runtime) == []


@pytest.mark.parametrize("also_verified", [False, True], ids=["alone", "beside-own-address"])
def test_an_unverified_address_of_an_existing_account_never_signs_into_it(
    client: TestClient, runtime: Runtime, github: GitHubStandIn,
    make_user: Callable[..., Account], also_verified: bool,
) -> None:
    """Paymenter#1285: add someone's address to your GitHub account unverified, sign in as them."""
    victim = make_user(email="victim@example.com")
    emails = [address(victim.email, primary=not also_verified, verified=False)]
    if also_verified:
        emails.insert(0, address("attacker@example.com"))
    github.person = Person(id=666, email=victim.email, emails=emails)  # even if /user says it
    b = browser_of(client)
    answer = _sign_in(b)
    if also_verified:  # in, but as the attacker's own new account
        assert answer.status_code == 303
        assert _signed_in_as(b) == "attacker@example.com"
        assert _identities(runtime) == [("github", "666", "attacker@example.com")]
    else:
        _refused(answer, b, "no verified primary e-mail address")
        assert _identities(runtime) == []
    assert _count(runtime, WebSession, WebSession.user_id == victim.user_id) == 0


# -- a callback this browser did not start ----------------------------------------------------


@pytest.mark.parametrize("attack", ["other browser", "forged state", "no state", "no cookie",
                                    "replay", "expired"])
def test_a_callback_is_acted_on_only_in_the_browser_that_started_it_once_and_in_time(
    client: TestClient, runtime: Runtime, github: GitHubStandIn, attack: str
) -> None:
    github.person = Person(id=2002, emails=[address("owner@example.com")])
    b = browser_of(client)
    back = _approve(_start(b))
    flow_cookie = b.cookies[FLOW_COOKIE]
    if attack == "other browser":  # login CSRF: the attacker's own callback URL, sent to a victim
        victim = browser_of(client)
        _start(victim)  # the victim may even have a flow of their own under way
        _refused(victim.get(back), victim, "not started in this browser")
    elif attack == "forged state":
        _refused(b.get(_with(back, state="x" * 43)), b, "not started in this browser")
    elif attack == "no state":
        _refused(b.get(_with(back, state=None)), b, "not started in this browser")
    elif attack == "no cookie":
        b.cookies.delete(FLOW_COOKIE)
        _refused(b.get(back), b, "not started in this browser")
    elif attack == "replay":
        assert b.get(back).status_code == 303
        b.cookies.clear()  # signed out, and the flow's cookie put back as it was
        b.cookies.set(FLOW_COOKIE, flow_cookie, domain="127.0.0.1")
        exchanged = len(github.exchanges)
        _refused(b.get(back), b, "used already")
        assert len(github.exchanges) == exchanged  # refused before GitHub was asked
        return
    elif attack == "expired":
        with runtime.sessions.begin() as session:
            session.execute(update(WebOAuthState).values(
                expires_at=utcnow() - timedelta(seconds=1)))
        _refused(b.get(back), b, "expired")
    assert github.exchanges == []  # the code never reached GitHub
    if attack != "expired":  # the refusal spent nothing: the real browser still finishes
        b.cookies.set(FLOW_COOKIE, flow_cookie, domain="127.0.0.1")
        assert b.get(back).status_code == 303
        assert _signed_in_as(b) == "owner@example.com"


def test_a_code_is_good_once_and_only_for_the_flow_it_was_issued_to(
    client: TestClient, runtime: Runtime, github: GitHubStandIn
) -> None:
    """The state is this browser's, the code another's: PKCE's verifier does not match it."""
    github.person = Person(id=3003, emails=[address("coder@example.com")])
    first = browser_of(client)
    used = _approve(_start(first))
    assert first.get(used).status_code == 303

    b = browser_of(client)
    mine = _approve(_start(b))
    _refused(b.get(_with(mine, code=_query(used)["code"])), b, "bad_verification_code")

    stolen = _approve(_start(browser_of(client)))  # another browser's flow, its code not yet used
    b2 = browser_of(client)
    mine = _approve(_start(b2))
    _refused(b2.get(_with(mine, code=_query(stolen)["code"])), b2, "bad_verification_code")
    assert _identities(runtime) == [("github", "3003", "coder@example.com")]


def test_cancelling_on_github_signs_nobody_in(client: TestClient, github: GitHubStandIn) -> None:
    github.deny = True
    b = browser_of(client)
    _refused(_sign_in(b), b, "access_denied")
    assert github.exchanges == []


# -- the ways in -------------------------------------------------------------------------------


@pytest.mark.parametrize("public_email", [None, "public@example.org"], ids=["private", "public"])
def test_a_verified_primary_address_signs_in_and_makes_the_account(
    client: TestClient, runtime: Runtime, github: GitHubStandIn, public_email: str | None
) -> None:
    """``/user``'s ``email`` is null for a private address (and never used): the primary
    verified one comes from ``/user/emails``."""
    github.person = Person(id=4004, email=public_email, emails=[
        address("old@example.com", primary=False, verified=True),
        address("New.Dev@Example.com")])
    b = browser_of(client)
    authorize = _start(b)
    asked = _query(authorize)
    assert authorize.startswith(f"{github.url}/login/oauth/authorize?")
    assert asked["client_id"] == github.client_id and asked["scope"] == "read:user user:email"
    assert asked["redirect_uri"] == f"{LOCAL}/app/signin/github/callback"
    assert asked["code_challenge_method"] == "S256" and len(asked["state"]) >= 32
    assert asked["code_challenge"] == challenge(b.cookies[FLOW_COOKIE])
    assert github.client_secret not in authorize

    done = b.get(_approve(authorize))
    assert (done.status_code, done.headers["location"]) == (303, "/app/tasks")
    assert _signed_in_as(b) == "new.dev@example.com"
    assert _identities(runtime) == [("github", "4004", "new.dev@example.com")]
    assert github.exchanges[0]["code_verifier"] == github.exchanges[0]["code_verifier"].strip()
    assert FLOW_COOKIE not in b.cookies  # the flow's cookie is gone with the flow


def test_the_flow_cookie_is_httponly_short_lived_and_host_only_away_from_loopback(
    client: TestClient, github: GitHubStandIn
) -> None:
    cookie = browser_of(client).get("/app/signin/github").headers["set-cookie"]
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert cookie.startswith(f"{FLOW_COOKIE}=")
    assert {"httponly", "samesite=lax", "path=/", "max-age=600"} <= flags
    remote = browser_of(client, "https://notify.example.com").get("/app/signin/github")
    cookie = remote.headers["set-cookie"]
    assert cookie.startswith(f"__Host-{FLOW_COOKIE}=") and "secure" in cookie.lower()


def test_the_github_id_keeps_the_account_when_the_address_changes(
    client: TestClient, runtime: Runtime, github: GitHubStandIn
) -> None:
    github.person = Person(id=5005, emails=[address("first@example.com")])
    assert _sign_in(browser_of(client)).status_code == 303
    for emails in ([address("second@example.com")],
                   [address("second@example.com", verified=False)]):  # linked: the id decides
        github.person = Person(id=5005, emails=emails)
        b = browser_of(client)
        assert _sign_in(b).status_code == 303
        assert _signed_in_as(b) == "first@example.com"
    assert _count(runtime, User) == 1


def test_an_existing_account_is_found_by_its_verified_address_and_linked(
    client: TestClient, runtime: Runtime, github: GitHubStandIn,
    make_user: Callable[..., Account],
) -> None:
    member = make_user(email="member@example.com")
    github.person = Person(id=6006, emails=[address("Member@Example.com")])
    b = browser_of(client)
    assert _sign_in(b).status_code == 303
    assert _signed_in_as(b) == member.email
    assert _identities(runtime) == [("github", "6006", member.email)]
    assert _count(runtime, User) == 1


@pytest.mark.parametrize(("signup", "domains"), [(False, ()), (True, ("corp.example",))])
def test_the_sign_up_rules_refuse_new_accounts_but_not_existing_ones(
    client: TestClient, runtime: Runtime, settings: Settings, github: GitHubStandIn,
    make_user: Callable[..., Account], signup: bool, domains: tuple[str, ...],
) -> None:
    runtime.settings = settings.replace(web_signup=signup, web_signup_domains=domains)
    github.person = Person(id=7007, emails=[address("stranger@example.com")])
    b = browser_of(client)
    _refused(_sign_in(b), b, "does not open one")
    assert _count(runtime, User) == 0 and _identities(runtime) == []

    make_user(email="stranger@example.com")  # the operator makes the account
    assert _sign_in(b).status_code == 303
    assert _signed_in_as(b) == "stranger@example.com"


def test_without_an_oauth_app_there_is_no_github_button_or_route(
    client: TestClient, runtime: Runtime, settings: Settings, github: GitHubStandIn
) -> None:
    b = browser_of(client)
    assert "Sign in with GitHub" in b.get("/app/signin").text
    runtime.settings = settings.replace(github_client_id=None, github_client_secret=None)
    assert "Sign in with GitHub" not in b.get("/app/signin").text
    assert b.get("/app/signin/github").status_code == 404
    assert b.get("/app/signin/github/callback?code=x&state=y").status_code == 404


def test_half_an_oauth_app_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="GITHUB_CLIENT_SECRET"):
        settings.replace(github_client_secret=None).validate()
    with pytest.raises(ConfigError, match="GITHUB_URL"):
        settings.replace(github_url="github.com").validate()


def test_starting_sign_ins_is_rate_limited_per_client(
    client: TestClient, runtime: Runtime, settings: Settings, github: GitHubStandIn
) -> None:
    runtime.settings = settings.replace(login_per_ip_per_hour=2)
    b = browser_of(client)
    _start(b)
    _start(b)
    third = b.get("/app/signin/github")
    assert third.status_code == 429 and "Too many" in third.text
    assert "location" not in third.headers
    assert _count(runtime, WebOAuthState) == 2


# -- GitHub failing ----------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["unreachable", "slow", "api error"])
def test_github_failing_is_a_clear_page_not_a_traceback(
    client: TestClient, runtime: Runtime, settings: Settings, github: GitHubStandIn,
    caplog: pytest.LogCaptureFixture, failure: str,
) -> None:
    github.person = Person(id=8008, emails=[address("patient@example.com")])
    b = browser_of(client)
    back = _approve(_start(b))
    if failure == "unreachable":
        nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        runtime.settings = settings.replace(github_url=nowhere, github_api_url=nowhere)
        expected, says = 502, "could not be reached"
    elif failure == "slow":
        github.stall = threading.Event()  # released when the stand-in stops
        runtime.settings = settings.replace(provider_timeout_s=0.5)
        expected, says = 504, "did not answer in time"
    else:
        runtime.settings = settings.replace(github_api_url=github.url + "/nothing-here")
        expected, says = 502, "GitHub answered 404 (/user)"
    with caplog.at_level(logging.WARNING):
        answer = b.get(back)
    assert answer.status_code == expected, answer.text
    assert says in answer.text and "Traceback" not in answer.text
    assert "Sign in with GitHub" in answer.text  # the page to start again from
    assert b.get("/app/tasks").status_code == 303 and _count(runtime, User) == 0
    assert github.client_secret not in answer.text + caplog.text
    assert "GitHub sign-in failed" in caplog.text


# -- the account's data ------------------------------------------------------------------------


def test_the_export_lists_the_link_and_deleting_the_account_removes_it(
    client: TestClient, runtime: Runtime, github: GitHubStandIn, make_user: Callable[..., Account]
) -> None:
    other = make_user(email="bystander@example.com")
    github.person = Person(id=9009, emails=[address("bystander@example.com")])
    assert _sign_in(browser_of(client)).status_code == 303  # the bystander's link stays
    github.person = Person(id=9010, emails=[address("leaver@example.com")])
    b = browser_of(client)
    assert _sign_in(b).status_code == 303
    left = _user_id(runtime, "9010")

    export = b.get("/app/account/export")
    data = json.loads(export.content)
    assert [(i["provider"], i["subject"]) for i in data["linked_accounts"]] == [
        ("github", "9010")]
    for never in (*github.tokens, github.client_secret, "9009"):
        assert never not in export.text

    token = re.search(r'name="csrf" value="([^"]+)"', b.get("/app/account").text)
    assert token is not None
    gone = b.post("/app/account/delete", data={"csrf": token.group(1),
                                               "confirm": "leaver@example.com"})
    assert gone.status_code == 200 and "deleted" in gone.text
    assert _identities(runtime) == [("github", "9009", other.email)]

    again = browser_of(client)  # the same GitHub account afterwards: a new account, not the old
    assert _sign_in(again).status_code == 303
    assert _signed_in_as(again) == "leaver@example.com"
    assert _user_id(runtime, "9010") not in (None, left)


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # SQLite takes its write lock first: no race there
def test_the_same_github_account_signing_in_twice_at_once_links_once(
    client: TestClient, runtime: Runtime, github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch, make_user: Callable[..., Account],
) -> None:
    """The other sign-in links the GitHub id between this one's look and its insert."""
    from claude_notify.cloud.server.web import github as module

    member = make_user(email="twice@example.com")
    github.person = Person(id=1111, emails=[address(member.email)])
    real = module.account_for

    def raced(db: Any, settings: Settings, email: str) -> Any:
        with runtime.sessions.begin() as other:
            other.add(WebIdentity(provider="github", subject="1111", user_id=member.user_id,
                                  created_at=utcnow()))
        return real(db, settings, email)

    monkeypatch.setattr(module, "account_for", raced)
    b = browser_of(client)
    assert _sign_in(b).status_code == 303
    assert _signed_in_as(b) == member.email
    assert _identities(runtime) == [("github", "1111", member.email)]


def test_github_sign_in_sends_no_mail(
    client: TestClient, github: GitHubStandIn, smtp_server: Mailbox
) -> None:
    github.person = Person(id=1212, emails=[address("quiet@example.com")])
    assert _sign_in(browser_of(client)).status_code == 303
    assert smtp_server.count() == 0  # no link, no code: GitHub vouched for the address


def test_a_linked_github_account_is_listed_and_unlinked_by_its_owner_only(
    client: TestClient, runtime: Runtime, github: GitHubStandIn
) -> None:
    github.person = Person(id=5005, email=None, emails=[address("linked@example.com")])
    b = browser_of(client)
    assert _sign_in(b).status_code == 303
    page = b.get("/app/account").text
    assert "Github user 5005" in page
    unlink = re.search(r'action="(/app/account/linked/[0-9a-f-]{36}/unlink)"', page)
    assert unlink is not None
    github.person = Person(id=6006, email=None, emails=[address("other@example.com")])
    other = browser_of(client)
    assert _sign_in(other).status_code == 303
    other_token = re.search(r'name="csrf" value="([^"]+)"', other.get("/app/account").text)
    assert other_token is not None
    assert other.post(unlink.group(1), data={"csrf": other_token.group(1)}).status_code == 404
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    done = b.post(unlink.group(1), data={"csrf": token.group(1)})
    assert (done.status_code, done.headers["location"]) == (303, "/app/account")
    assert _identities(runtime) == [("github", "6006", "other@example.com")]
    assert "Github user" not in b.get("/app/account").text
