"""Feishu adapter against the custom-bot stand-in; signatures against the documented vector."""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
from standins.feishu import FeishuStandIn
from standins.kit import deliver, event, feishu, message, notice, provider_settings

from claude_notify.cloud.server.channels.feishu import build_body, sign
from claude_notify.cloud.server.settings import Settings

__all__ = ["feishu"]


def _settings(standin: FeishuStandIn) -> Settings:
    return Settings(**provider_settings(feishu=standin.base_url, lark=standin.base_url))


def test_signature_matches_the_documented_vector() -> None:
    # shared/reference/cloud-backend.md §B8, recomputed there with Python's hmac
    assert sign(1599360473, "test-secret") == "wSds2BzzFIIGf/WrhUO+NI1q/9j+FRJd3JNHKAq0NZY="
    # and an independent computation (the official sample's form) for other inputs
    key = b"1700000000\nanother"
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert sign(1700000000, "another") == expected


def test_card_has_coloured_header_summary_tail_and_button(feishu: FeishuStandIn) -> None:
    result = deliver(_settings(feishu), message("feishu", {"webhook_url": feishu.url()}))
    assert result.ok, result.detail
    [req] = feishu.accepted()
    body = req.json()
    assert body["msg_type"] == "interactive" and "content" not in body
    card = body["card"]
    assert card["header"] == {
        "title": {"tag": "plain_text", "content": "✅ make test finished (exit 0, 3m12s)"},
        "template": "green",
    }
    summary, _, tail, action = card["elements"]
    assert summary["text"]["tag"] == "lark_md"
    assert req.displayed["text"].splitlines()[1] == "**Finished** · exit 0 · 3m12s · build-1"
    assert tail["text"] == {"tag": "plain_text",
                            "content": "collected 120 items\n120 passed in 190.1s"}  # fmt: skip
    assert action["actions"][0]["url"] == "https://app.example/t/7f3a"


def test_signed_bot_accepts_a_signed_request(feishu: FeishuStandIn) -> None:
    config = {"webhook_url": feishu.url("signed"), "secret": "s3cr3t"}
    assert deliver(_settings(feishu), message("feishu", config)).ok
    body = feishu.accepted()[0].json()
    assert set(body) >= {"timestamp", "sign"}


def test_bad_signature_is_an_error_despite_http_200(feishu: FeishuStandIn) -> None:
    config = {"webhook_url": feishu.url("signed"), "secret": "wrong"}
    result = deliver(_settings(feishu), message("feishu", config))
    assert feishu.requests[0].status == 200
    assert not result.ok and not result.retryable
    assert result.detail.startswith("Feishu 19021: sign match fail")


def test_stale_timestamp_is_refused_by_the_stand_in(feishu: FeishuStandIn) -> None:
    msg = message("feishu", {"webhook_url": feishu.url("signed"), "secret": "s3cr3t"})
    old = build_body(msg, app_url=None, now=1599360473)  # correctly signed, years ago
    answer = httpx.post(feishu.base_url + "/open-apis/bot/v2/hook/signed", json=old).json()
    assert answer["code"] == 19021


def test_frequency_limit_retries_other_codes_do_not(feishu: FeishuStandIn) -> None:
    settings = _settings(feishu)
    config = {"webhook_url": feishu.url()}
    feishu.answer((200, {"code": 11232, "msg": "frequency limited psm[lark.oapi.app_platform]",
                         "data": {}}, {}))  # fmt: skip
    limited = deliver(settings, message("feishu", config))
    assert limited.retryable and limited.detail.startswith("Feishu 11232")
    feishu.bots["hook-1"]["keywords"] = ["deploy"]
    keyword = deliver(settings, message("feishu", config))
    assert not keyword.retryable and keyword.detail == "Feishu 19024: Key Words Not Found"


def test_removed_bot_disables_the_channel(feishu: FeishuStandIn) -> None:
    result = deliver(_settings(feishu), notice("feishu", {"webhook_url": feishu.url("gone")}))
    assert result.disable_channel and result.detail.startswith("Feishu 19001")


def test_lark_urls_go_to_the_lark_base(feishu: FeishuStandIn) -> None:
    settings = Settings(**provider_settings(feishu="http://127.0.0.1:9", lark=feishu.base_url))
    url = feishu.url(host="open.larksuite.com")
    assert deliver(settings, message("feishu", {"webhook_url": url})).ok


def test_huge_tail_keeps_the_body_under_20_kb(feishu: FeishuStandIn) -> None:
    payload = event(tail="日本語のログ行\n" * 5000)
    result = deliver(_settings(feishu), message("feishu", {"webhook_url": feishu.url()}, payload))
    assert result.ok, result.detail
    req = feishu.accepted()[0]
    assert len(req.body) <= 20 * 1024
    assert "characters trimmed]" in req.displayed["text"]
