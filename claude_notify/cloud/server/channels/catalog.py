"""Channel types, their aliases, the user-level config each holds and the rules that fire them.

A user's channel holds only user-level values (an address, a chat, a number, a webhook URL):
operator credentials such as the SMTP account or the Telegram bot token come from settings.
"""

from __future__ import annotations

import re
import secrets
from base64 import b64encode
from collections.abc import Collection
from typing import Any, Final
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from claude_notify.cloud.server.urlguard import UnsafeURL, check_url

CHANNEL_TYPES: Final = ("email", "telegram", "discord", "feishu", "slack", "teams", "ntfy",
                         "sms", "whatsapp", "webhook", "webpush")
ALIASES: Final = {"tg": "telegram", "mail": "email"}
NEEDS_VERIFICATION: Final = frozenset({"email", "sms", "telegram", "whatsapp"})
"""Types whose recipient must confirm before receiving anything (no texting strangers)."""
SERVER_KEYS: Final = ("chat_id", "chat_type", "tg_user_id", "chat_title", "template",
                      "discord_user_id", "feishu_open_id", "slack_user_id")
"""Config values the server sets (a linked chat or replying account, a saved template): kept
when a user edits."""

SECRET_KEYS: Final = frozenset({"secret", "auth"})
HIDDEN_QUERY: Final = frozenset({"teams"})
"""Types whose URL's query is a credential (a Teams workflow's ``sig``): reads show the URL
without it."""
"""Config values shown only when set (creation, rotation), never in a list or a read."""

TRIGGERS: Final = ("finished", "failure", "match", "needs_input", "progress")
"""``finished``: every finish; ``failure``: only failed or interrupted ones; ``match``: output
matching the channel's regex; ``needs_input``: the task waits for the user; ``progress``."""

PINNED_HOSTS: Final = {
    "discord": ("discord.com", "discordapp.com"),
    "feishu": ("open.feishu.cn", "open.larksuite.com"),
    "slack": ("hooks.slack.com",),
    "teams": ("logic.azure.com", "api.powerplatform.com"),
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PROVIDER_PATHS: Final = {
    "discord": re.compile(r"^/api(?:/v\d+)?/webhooks/\d+/[\w-]+/?$"),
    "feishu": re.compile(r"^/open-apis/bot/v2/hook/[\w-]+$"),
    "slack": re.compile(r"^/services/[A-Z0-9]+/[A-Z0-9]+/[A-Za-z0-9]+$"),
}
_PROVIDER_EXAMPLES: Final = {
    "discord": "https://discord.com/api/webhooks/<id>/<token>",
    "feishu": "https://open.feishu.cn/open-apis/bot/v2/hook/<token>",
    "slack": "https://hooks.slack.com/services/T…/B…/…",
}
MAX_REGEX_CHARS: Final = 200


def normalise_type(name: str, extra: Collection[str] = ()) -> str:
    """The canonical type for a name or alias (``extra``: the enabled plugins' types);
    ``ValueError`` for an unknown one."""
    canonical = ALIASES.get(name.lower(), name.lower())
    if canonical not in CHANNEL_TYPES and canonical not in extra:
        choices = ", ".join(sorted((*CHANNEL_TYPES, *ALIASES, *extra)))
        raise ValueError(f"unknown channel type {name!r}: choose one of {choices}")
    return canonical


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + b64encode(secrets.token_bytes(32)).decode()


def validate_config(kind: str, config: dict[str, Any], *, allow_private: bool) -> dict[str, Any]:
    """The stored config for a channel of ``kind``; ``ValueError`` says which value is wrong."""
    validators = {
        "email": _email,
        "telegram": _telegram,
        "sms": _sms,
        "whatsapp": _sms,  # a WhatsApp account is a phone number too
        "webhook": _webhook,
        "discord": _provider_url,
        "feishu": _provider_url,
        "slack": _provider_url,
        "ntfy": _ntfy,
        "teams": _teams,
        "webpush": _webpush,
    }
    return validators[kind](kind, dict(config), allow_private)


def shown(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as reads show it: no signing secret, no credential in a URL's query."""
    out = {k: v for k, v in config.items() if k not in SECRET_KEYS}
    if kind in HIDDEN_QUERY and isinstance(out.get("webhook_url"), str):
        out["webhook_url"] = out["webhook_url"].split("?", 1)[0]
    return out


def carry_over(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A user's new config with the values the server set (:data:`SERVER_KEYS`) kept."""
    return {**{k: v for k, v in old.items() if k in SERVER_KEYS and k not in new}, **new}


def keep_secret(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the old signing secret when it names none: an update that leaves the secret
    out (reads never show it) keeps it; only a rotation or an explicit new one replaces it."""
    if "secret" in new or "secret" not in old:
        return new
    return {**new, "secret": old["secret"]}


def recipient(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that names who receives: changing it needs a new confirmation."""
    return {k: v for k, v in config.items()
            if k not in ("template", "chat_title", "allow_group_replies")}


def _only(config: dict[str, Any], allowed: set[str]) -> None:
    if extra := set(config) - allowed:
        raise ValueError(f"unknown config key(s): {', '.join(sorted(extra))}")


def _string(config: dict[str, Any], key: str, *, max_len: int = 2048) -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ValueError(f"config.{key} must be a non-empty string of at most {max_len} chars")
    return value


def _email(_kind: str, config: dict[str, Any], _allow: bool) -> dict[str, Any]:
    _only(config, {"address"})
    try:
        address = validate_email(
            _string(config, "address", max_len=320), check_deliverability=False
        )
    except EmailNotValidError as exc:
        raise ValueError(f"config.address is not a valid e-mail address: {exc}") from None
    return {"address": address.normalized}


def _telegram(_kind: str, config: dict[str, Any], _allow: bool) -> dict[str, Any]:
    # The chat is learnt from the /start CODE message, never taken from the user; the owner
    # only chooses whether a linked group chat takes their replies and button presses.
    if set(config) - {"allow_group_replies"}:
        raise ValueError("a Telegram chat is linked with POST /v1/channels/{id}/link: config "
                         "takes only allow_group_replies (true or false)")
    allow = config.get("allow_group_replies", False)
    if not isinstance(allow, bool):
        raise ValueError("config.allow_group_replies must be true or false")
    return {"allow_group_replies": True} if allow else {}


def _sms(_kind: str, config: dict[str, Any], _allow: bool) -> dict[str, Any]:
    _only(config, {"number"})
    number = _string(config, "number", max_len=16)
    if not _E164.match(number):
        raise ValueError("config.number must be an E.164 phone number such as +14155550100")
    return {"number": number}


def _webhook(_kind: str, config: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    _only(config, {"url", "secret"})
    url = _checked_url(config, "url", allow_private=allow_private, pinned=())
    secret = config.get("secret") or new_webhook_secret()
    if not isinstance(secret, str) or not secret.startswith("whsec_") or len(secret) > 200:
        raise ValueError("config.secret must be a Standard Webhooks secret (whsec_…)")
    return {"url": url, "secret": secret}


_TOPIC = re.compile(r"^/[-_A-Za-z0-9]{1,64}$")


def _ntfy(_kind: str, config: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    _only(config, {"url", "secret"})
    url = _checked_url(config, "url", allow_private=allow_private, pinned=())
    parts = urlsplit(url)
    if not _TOPIC.match(parts.path) or parts.query or parts.fragment:
        raise ValueError("config.url must be a topic's URL, such as https://ntfy.sh/my-topic")
    out: dict[str, Any] = {"url": url}
    if "secret" in config:  # an access token for a protected topic
        out["secret"] = _string(config, "secret", max_len=200)
    return out


def _teams(kind: str, config: dict[str, Any], _allow: bool) -> dict[str, Any]:
    _only(config, {"webhook_url"})
    url = _checked_url(config, "webhook_url", allow_private=False, pinned=PINNED_HOSTS[kind])
    parts = urlsplit(url)
    if parts.scheme != "https" or "/workflows/" not in parts.path or "sig=" not in parts.query:
        raise ValueError("config.webhook_url must be a Teams workflow's URL (https://…/workflows"
                         "/…/invoke?…&sig=…, from 'Post to a channel when a webhook request is "
                         "received')")
    return {"webhook_url": url}


def _webpush(_kind: str, config: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    # A browser's PushSubscription: the push service's URL for it and the keys its payloads
    # are encrypted to (RFC 8291). The URL is the browser's push service, never ours to trust:
    # checked like a webhook's, and https:// unless the operator allows private addresses.
    _only(config, {"endpoint", "p256dh", "auth"})
    endpoint = _checked_url(config, "endpoint", allow_private=allow_private, pinned=())
    if urlsplit(endpoint).scheme != "https" and not allow_private:
        raise ValueError("config.endpoint must be a push service's https:// URL")
    p256dh, auth = _string(config, "p256dh", max_len=100), _string(config, "auth", max_len=50)
    from cryptography.hazmat.primitives.asymmetric import ec

    from claude_notify.cloud.server.channels.vapid import b64url_decode

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
    except ValueError:
        raise ValueError("config.p256dh must be the subscription's P-256 public key "
                         "(base64url)") from None
    try:
        secret = b64url_decode(auth)
    except ValueError:
        secret = b""
    if len(secret) != 16:
        raise ValueError("config.auth must be the subscription's 16-byte secret (base64url)")
    return {"endpoint": endpoint, "p256dh": p256dh, "auth": auth}


def _provider_url(kind: str, config: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    # Feishu's /run arrives through the operator's app bot: in a group chat only when the owner
    # turned on allow_group_replies, as for Telegram. Discord's commands answer only the sender.
    _only(config, {"webhook_url", "secret"} | ({"allow_group_replies"}
                                               if kind in ("feishu", "slack") else set()))
    url = _checked_url(config, "webhook_url", allow_private=False, pinned=PINNED_HOSTS[kind])
    if not _PROVIDER_PATHS[kind].match(urlsplit(url).path):
        raise ValueError(f"config.webhook_url must look like {_PROVIDER_EXAMPLES[kind]}")
    out: dict[str, Any] = {"webhook_url": url}
    if "secret" in config:
        out["secret"] = _string(config, "secret", max_len=200)
    allow = config.get("allow_group_replies", False)
    if not isinstance(allow, bool):
        raise ValueError("config.allow_group_replies must be true or false")
    if allow:
        out["allow_group_replies"] = True
    return out


def _checked_url(
    config: dict[str, Any], key: str, *, allow_private: bool, pinned: tuple[str, ...]
) -> str:
    url = _string(config, key)
    try:
        check_url(url, allow_private=allow_private, pinned=pinned)
    except UnsafeURL as exc:
        raise ValueError(f"config.{key}: {exc}") from None
    return url


def validate_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """``{"on": [triggers], "regex": str | None}`` with defaults filled in."""
    _only(rules, {"on", "regex"})
    on = rules.get("on", ["finished"])
    if not isinstance(on, list) or not on or not all(t in TRIGGERS for t in on):
        raise ValueError(f"rules.on must be a non-empty list of: {', '.join(TRIGGERS)}")
    regex = rules.get("regex")
    if regex is not None:
        if not isinstance(regex, str) or not regex or len(regex) > MAX_REGEX_CHARS:
            raise ValueError(f"rules.regex must be a pattern of at most {MAX_REGEX_CHARS} chars")
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"rules.regex does not compile: {exc}") from None
    return {"on": sorted(set(on), key=TRIGGERS.index), "regex": regex}
