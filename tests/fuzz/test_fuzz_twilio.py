"""Fuzz the Twilio webhook checks in process: any params, signature, proxy headers or settings
header → a yes/no answer from the signature check (403 or on), and the SMS fields always build."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import example, given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from channels.http.twilio import _form, message_fields, public_request_url, signature_valid
from config import RouterSettings
from tests.fuzz.profiles import examples
from tests.fuzz.test_fuzz_http_parsing import make_request

TOKEN = "twilio-test-auth-token-0123456789"
PUBLIC = "http://127.0.0.1:8080"

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=30)
TWILIO_FIELDS = [
    "From",
    "To",
    "Body",
    "MessageSid",
    "SmsSid",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "AccountSid",
    "ProfileName",
    "WaId",
    "MediaUrl19",
]
params_strategy = st.dictionaries(
    st.sampled_from(TWILIO_FIELDS) | text,
    text | st.sampled_from(["21", "-1", "1" * 5000, "\uff11\uff12", "NaN", "whatsapp:+15551234567", ""]),
    max_size=8,
)
settings_header = (
    st.sampled_from(
        [
            None,
            "",
            "algorithm=HMAC_SHA256",
            "algorithm=HMAC_SHA1",
            "algorithm=md5",
            "algorithm=",
            "key=x,algorithm=hmac_sha256",
            ",,,=",
        ]
    )
    | latin1
)


@examples(450)
@given(
    params=params_strategy,
    signature=latin1,
    algorithm=settings_header,
    sign_right=st.booleans(),
    trust_proxy=st.booleans(),
    proto=latin1,
    host=latin1,
    query=st.sampled_from(["", "a=1", "bodySHA256=x"]),
)
@example(
    params={},
    signature="x",
    algorithm=None,
    sign_right=False,
    trust_proxy=True,
    proto="http",
    host="h:99999",
    query="",
)
@example(
    params={},
    signature="x",
    algorithm=None,
    sign_right=False,
    trust_proxy=True,
    proto="http",
    host="h:port",
    query="",
)
@example(
    params={},
    signature="x",
    algorithm=None,
    sign_right=False,
    trust_proxy=True,
    proto="http",
    host="[::1",
    query="",
)
def test_signature_check(
    params: dict[str, str],
    signature: str,
    algorithm: str | None,
    sign_right: bool,
    trust_proxy: bool,
    proto: str,
    host: str,
    query: str,
) -> None:
    body = urlencode(params).encode()
    request = make_request(body, "application/x-www-form-urlencoded", query)
    request.path = "/sms/main"
    request.headers.update(
        {"x-twilio-signature": signature, "x-forwarded-proto": proto, "x-forwarded-host": host}
    )
    if algorithm is not None:
        request.headers["x-twilio-webhooks-signature-settings"] = algorithm
    router = RouterSettings(public_url=PUBLIC, trust_proxy=trust_proxy)
    valid_algorithm = algorithm in (None, "", "algorithm=HMAC_SHA1", "algorithm=HMAC_SHA256", "algorithm=")
    if sign_right and valid_algorithm and not trust_proxy:
        request.headers["x-twilio-signature"] = RequestValidator(TOKEN).compute_signature(
            public_request_url(request, router),
            params,
            "HMAC_SHA256" if algorithm == "algorithm=HMAC_SHA256" else None,
        )
    outcome = signature_valid(request, _form(request), router, TOKEN)
    assert isinstance(outcome, bool)
    if sign_right and valid_algorithm and not trust_proxy and "bodySHA256" not in query:
        assert outcome


@examples(300)
@given(params=params_strategy, kind=st.sampled_from(["sms", "whatsapp"]))
def test_message_fields(params: dict[str, str], kind: str) -> None:
    fields = message_fields(dict(params), kind, "2026-01-01T00:00:00Z")
    assert 0 <= fields["num_media"] <= 20
    assert len(fields["media"]) <= fields["num_media"]
