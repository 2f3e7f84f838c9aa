"""trigger.events.decode: every shape a Cloud Build notification reaches us in, and what is refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import BadMessage
from tests.servers.data import SUBSCRIPTION, load_build, pubsub_message
from trigger.events import decode


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


def message(build: dict[str, Any], message_id: str = "msg-1") -> dict[str, Any]:
    """A Pub/Sub message as the cloud-builds topic publishes it."""
    attributes = {"buildId": build["id"], "status": str(build.get("status"))}
    return pubsub_message(build, message_id, attributes=attributes, publish_time="2026-11-25T10:03:42.123456789Z")


def binary_event_data(build: dict[str, Any]) -> dict[str, Any]:
    """What functions-framework hands on_build as cloud_event.data (binary content mode)."""
    return {"message": message(build), "subscription": SUBSCRIPTION}


def structured_event(build: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "//pubsub.googleapis.com/projects/acme-prod/topics/cloud-builds",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "datacontenttype": "application/json",
        "time": "2026-11-25T10:03:42.123Z",
        "data": {"message": message(build), "subscription": SUBSCRIPTION},
    }


def push_body(build: dict[str, Any]) -> dict[str, Any]:
    """A Pub/Sub push request body; the real one carries snake_case duplicates of the ids."""
    msg = message(build)
    msg.update(message_id=msg["messageId"], publish_time=msg["publishTime"])
    return {"message": msg, "subscription": SUBSCRIPTION, "deliveryAttempt": 1}


def with_snake_duplicates(build: dict[str, Any]) -> dict[str, Any]:
    msg = message(build)
    msg.update(message_id="msg-snake", publish_time="2026-11-25T10:03:42Z")  # camelCase must win
    return {"message": msg, "subscription": SUBSCRIPTION}


def snake_only(build: dict[str, Any]) -> dict[str, Any]:
    return {"data": b64(build), "attributes": {}, "message_id": "msg-1", "publish_time": "2026-11-25T10:03:42Z"}


def with_unknown_fields(build: dict[str, Any]) -> dict[str, Any]:
    event = structured_event(build)
    event["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event["data"]["message"]["orderingKey"] = ""
    event["data"]["futureField"] = {"x": [1, 2]}
    return event


Shape = Callable[[dict[str, Any]], Any]

SHAPES: list[Any] = [
    pytest.param(binary_event_data, id="cloudevent-binary-data"),
    pytest.param(structured_event, id="cloudevent-structured"),
    pytest.param(
        lambda b: {k: v for k, v in structured_event(b).items() if k != "data"}
        | {"data_base64": b64(structured_event(b)["data"])},
        id="cloudevent-structured-data_base64",
    ),
    pytest.param(push_body, id="push-body"),
    pytest.param(message, id="bare-message"),
    pytest.param(lambda b: json.dumps(binary_event_data(b)), id="json-str-of-binary-data"),
    pytest.param(lambda b: json.dumps(structured_event(b)).encode(), id="json-bytes-of-structured"),
    pytest.param(lambda b: json.dumps(push_body(b)).encode(), id="json-bytes-of-push-body"),
    pytest.param(lambda b: json.dumps(message(b)), id="json-str-of-bare-message"),
    pytest.param(with_snake_duplicates, id="snake-duplicates-camel-wins"),
    pytest.param(snake_only, id="snake-case-only"),
    pytest.param(with_unknown_fields, id="unknown-fields-ignored"),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_decodes_to_the_same_build(shape: Shape) -> None:
    raw = load_build("console_cd_trigger")

    build = decode(shape(raw), "ce-fallback")

    assert build.id == "5f1c2a9e-7d41-4b8e-9c3a-0e6b2d8f1a77"
    assert build.status == "SUCCESS"
    assert build.project_id == "acme-prod"
    assert build.message_id == "msg-1"
    assert build.trigger_id == "0b9c8d7e-1111-2222-3333-444455556666"
    assert build.log_url == raw["logUrl"]
    assert [s.id for s in build.steps] == ["Build", "Push", "Deploy"]
    assert build.steps[2].entrypoint == "gcloud"
    assert build.images == ("us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f",)
    assert build.image_digests == {raw["images"][0]: raw["results"]["images"][0]["digest"]}
    assert build.substitutions["_SERVICE_NAME"] == "orders"
    assert (build.branch, build.commit, build.trigger_name) == ("main", "9d2b1c0e4f", raw["substitutions"]["TRIGGER_NAME"])


@pytest.mark.parametrize(
    ("name", "status", "project"),
    [
        pytest.param("bash_two_services", "SUCCESS", "acme-prod", id="bash_two_services"),
        pytest.param("cloud_function", "SUCCESS", "acme-prod", id="cloud_function"),
        pytest.param("console_cd_trigger", "SUCCESS", "acme-prod", id="console_cd_trigger"),
        pytest.param("docker_only", "SUCCESS", "acme-prod", id="docker_only-int-status-snake-project"),
        pytest.param("gcloud_entrypoint", "SUCCESS", "acme-staging", id="gcloud_entrypoint"),
    ],
)
def test_recorded_builds_decode_from_a_push_body(name: str, status: str, project: str) -> None:
    raw = load_build(name)

    build = decode(push_body(raw))

    assert (build.id, build.status, build.project_id) == (raw["id"], status, project)
    assert len(build.steps) == len(raw["steps"])


def test_a_build_given_directly_is_accepted() -> None:
    build = decode(load_build("gcloud_entrypoint"), "ce-9")

    assert (build.id, build.status, build.message_id) == ("b7e0d3c1-2222-4a4a-8b8b-123456789abc", "SUCCESS", "ce-9")


def test_event_id_stands_in_when_the_message_has_no_id() -> None:
    msg = message(load_build("gcloud_entrypoint"))
    del msg["messageId"]

    assert decode({"message": msg, "subscription": SUBSCRIPTION}, "ce-42").message_id == "ce-42"


@pytest.mark.parametrize(
    ("build_status", "attribute_status", "expected"),
    [
        pytest.param(3, None, "SUCCESS", id="int-3-success"),
        pytest.param(1, None, "QUEUED", id="int-1-queued"),
        pytest.param(2, None, "WORKING", id="int-2-working"),
        pytest.param(4, None, "FAILURE", id="int-4-failure"),
        pytest.param("3", None, "SUCCESS", id="digit-string"),
        pytest.param("success", None, "SUCCESS", id="lower-case-name"),
        pytest.param(42, None, "STATUS_UNKNOWN", id="unknown-number"),
        pytest.param(None, "TIMEOUT", "TIMEOUT", id="absent-taken-from-attributes"),
        pytest.param("SUCCESS", "FAILURE", "SUCCESS", id="build-wins-over-attributes"),
    ],
)
def test_status_as_name_or_enum_number(build_status: Any, attribute_status: str | None, expected: str) -> None:
    raw: dict[str, Any] = {"id": "b-1", "projectId": "p"}
    if build_status is not None:
        raw["status"] = build_status
    msg = {"data": b64(raw), "attributes": {"status": attribute_status} if attribute_status else {}, "messageId": "m"}

    assert decode({"message": msg}).status == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-25T10:00:01.123456789Z", datetime(2026, 11, 25, 10, 0, 1, 123456, UTC), id="nanoseconds-Z"),
        pytest.param("2026-11-25T10:00:01.1234567Z", datetime(2026, 11, 25, 10, 0, 1, 123456, UTC), id="seven-digits"),
        pytest.param("2026-11-25T10:00:01.5Z", datetime(2026, 11, 25, 10, 0, 1, 500000, UTC), id="one-digit"),
        pytest.param("2026-11-25T10:00:01Z", datetime(2026, 11, 25, 10, 0, 1, tzinfo=UTC), id="no-fraction"),
        pytest.param(
            "2026-11-25T12:00:01.123456789+02:00", datetime(2026, 11, 25, 10, 0, 1, 123456, UTC), id="nanoseconds-offset"
        ),
        pytest.param("2026-11-25T10:00:01.000000001", datetime(2026, 11, 25, 10, 0, 1, tzinfo=UTC), id="naive-is-utc"),
        pytest.param("yesterday", None, id="unreadable-is-none"),
    ],
)
def test_timestamps(text: str, expected: datetime | None) -> None:
    raw = {"id": "b-1", "status": "SUCCESS", "createTime": text, "start_time": text}

    build = decode(message(raw))

    assert build.create_time == expected
    assert build.start_time == expected  # snake_case spelling of the same field


def test_recorded_nanosecond_times() -> None:
    build = decode(binary_event_data(load_build("console_cd_trigger")))

    assert build.create_time == datetime(2026, 11, 25, 10, 0, 1, 123456, UTC)
    assert build.finish_time == datetime(2026, 11, 25, 10, 3, 41, 987654, UTC)


def _in_message(data: str, message_id: str = "m-bad") -> dict[str, Any]:
    return {"message": {"data": data, "attributes": {}, "messageId": message_id}, "subscription": SUBSCRIPTION}


@pytest.mark.parametrize(
    ("payload", "event_id", "message_id", "fragment"),
    [
        pytest.param(_in_message("not*base64!"), "ce-1", "m-bad", "invalid base64", id="invalid-base64"),
        pytest.param(_in_message(b64(b"hello, world")), "ce-1", "m-bad", "found b'hello, world'", id="base64-of-non-json"),
        pytest.param(_in_message(b64([{"id": "b-1"}])), "ce-1", "m-bad", "found list", id="json-array-not-object"),
        pytest.param(_in_message(b64({"status": "SUCCESS"})), "ce-1", "m-bad", "'id'", id="build-missing-id"),
        pytest.param(_in_message(b64({"id": 7, "status": "SUCCESS"})), "ce-1", "m-bad", "'id'", id="build-id-not-a-string"),
        pytest.param(_in_message(""), "ce-1", "m-bad", "found none", id="empty-data"),
        pytest.param(
            {"specversion": "1.0", "id": "ce-7", "type": "google.cloud.pubsub.topic.v1.messagePublished",
             "data": {"message": {"data": "", "attributes": {}}}},
            "", "ce-7", "found none", id="empty-data-in-structured-event-uses-event-id",
        ),
        pytest.param([1, 2, 3], "ce-1", "ce-1", "found list", id="non-dict-payload-list"),
        pytest.param(42, "ce-1", "ce-1", "found int", id="non-dict-payload-int"),
        pytest.param(None, "ce-1", "ce-1", "found NoneType", id="non-dict-payload-none"),
        pytest.param({"hello": "world"}, "ce-1", "ce-1", "found keys ['hello']", id="dict-without-message"),
        pytest.param("not json {", "ce-1", "ce-1", "undecodable text", id="undecodable-str"),
        pytest.param(b'{"id": "\xff"}', "ce-1", "ce-1", "undecodable text", id="undecodable-bytes-not-utf8"),
        pytest.param(b"", "ce-1", "ce-1", "undecodable text", id="empty-bytes"),
    ],
)
def test_bad_messages_say_what_was_expected_and_found(payload: Any, event_id: str, message_id: str, fragment: str) -> None:
    with pytest.raises(BadMessage) as caught:
        decode(payload, event_id)

    assert caught.value.message_id == message_id
    assert "expected" in caught.value.reason
    assert "found" in caught.value.reason
    assert fragment in caught.value.reason


def test_odd_shapes_inside_a_build_are_ignored_not_fatal() -> None:
    build = decode({"id": "b1", "status": "SUCCESS", "results": {"images": 5}, "substitutions": ["x"], "steps": "nope"})
    assert (build.id, build.image_digests, build.substitutions, build.steps) == ("b1", {}, {}, ())


# --- hostile shapes: each must be acked as a bad message, never crash the decoder -------------------------------

DEEP = 3000  # far past Python's recursion limit: json.loads alone raises RecursionError on it


def deep_json(levels: int = DEEP) -> str:
    return "[" * levels + "]" * levels


def deep_dict(levels: int = DEEP) -> dict[str, Any]:
    """A build whose ``artifacts`` nest ``levels`` deep, built without recursion."""
    inner: dict[str, Any] = {}
    node = inner
    for _ in range(levels):
        node["x"] = {}
        node = node["x"]
    return {"id": "b-1", "status": "SUCCESS", "artifacts": inner}


@pytest.mark.parametrize(
    ("payload", "message_id", "found"),
    [
        pytest.param(deep_json(), "ce-1", "JSON nested deeper than", id="deep-json-text"),
        pytest.param(deep_json().encode(), "ce-1", "JSON nested deeper than", id="deep-json-bytes"),
        pytest.param(_in_message(base64.b64encode(deep_json().encode()).decode()), "m-bad", "JSON nested deeper than",
                     id="deep-json-in-push-body-data"),
        pytest.param({"specversion": "1.0", "id": "ce-9", "data_base64": base64.b64encode(deep_json().encode()).decode()},
                     "ce-1", "JSON nested deeper than", id="deep-json-in-cloudevent-data_base64"),
        pytest.param({"specversion": "1.0", "id": "ce-9", "data": deep_json()}, "ce-1", "JSON nested deeper than",
                     id="deep-json-text-as-cloudevent-data"),
        pytest.param(_in_message(b64(deep_dict(100))), "m-bad", "nested 65 levels deep or more",
                     id="build-nested-past-the-limit-in-data"),
        pytest.param(deep_dict(), "ce-1", "nested 65 levels deep or more", id="deep-dict-given-directly"),
        pytest.param({"message": {"data": b64({"id": "b-1"}), "attributes": deep_dict()["artifacts"]}}, "ce-1",
                     "nested 65 levels deep or more", id="deep-attributes-of-a-push-body"),
    ],
)
def test_deeply_nested_json_is_a_bad_message(payload: Any, message_id: str, found: str) -> None:
    with pytest.raises(BadMessage) as caught:
        decode(payload, "ce-1")  # the event id from functions-framework wins over the CloudEvent's own

    assert caught.value.reason.startswith("expected JSON nested at most 64 levels deep"), caught.value.reason
    assert found in caught.value.reason
    assert caught.value.message_id == message_id


def test_nesting_up_to_the_limit_is_read() -> None:
    at_limit, past_limit = deep_dict(62), deep_dict(63)  # the build, its artifacts, then 62 or 63 levels: 64 and 65

    for wrap in (lambda b: b, lambda b: {"message": {"data": b64(b), "messageId": "m"}},
                 lambda b: {"specversion": "1.0", "id": "ce-1", "data": {"message": {"data": b64(b), "messageId": "m"}}}):
        assert decode(wrap(at_limit)).id == "b-1"
        with pytest.raises(BadMessage, match="nested 65 levels deep or more"):
            decode(wrap(past_limit))


def test_cloudevents_nested_inside_cloudevents_are_bad() -> None:
    # Each level is a JSON string inside the one around it: shallow objects, but one decode call per level.
    event: Any = {"message": {"data": b64({"id": "b-1", "status": "SUCCESS"}), "messageId": "m"}}
    for _ in range(3):
        event = {"specversion": "1.0", "id": "ce-1", "data": json.dumps(event)}

    with pytest.raises(BadMessage, match=r"expected one CloudEvent around the Pub/Sub message, found CloudEvents nested"):
        decode(event)


@pytest.mark.parametrize(
    "build_id",
    ["..", ".", "../../etc", "a/b", "a\\b", "a\nb", " b-1", "-b", "_b", "x" * 129, "b\u00e9", "b\x00"],
    ids=["dot-dot", "dot", "traversal", "slash", "backslash", "newline", "leading-space", "leading-hyphen",
         "leading-underscore", "too-long", "non-ascii", "nul"],
)
def test_a_build_id_that_cannot_name_a_folder_is_a_bad_message(build_id: str) -> None:
    with pytest.raises(BadMessage) as caught:
        decode(_in_message(b64({"id": build_id, "status": "SUCCESS"})))

    reason = caught.value.reason
    assert reason.startswith("expected a Build id of 1 to 128 ASCII letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit, found "), reason
    assert repr(build_id[:64]) in reason
    assert "\n" not in reason and "\x00" not in reason


@pytest.mark.parametrize("build_id", ["b", "5f1c2a9e-7d41-4b8e-9c3a-0e6b2d8f1a77", "demo-20261201T161314Z", "B.1_x",
                                      "x" * 128])
def test_build_ids_of_every_real_shape_are_read(build_id: str) -> None:
    assert decode(_in_message(b64({"id": build_id, "status": "SUCCESS"}))).id == build_id


def test_lone_surrogates_become_replacement_characters() -> None:
    # Valid JSON, not valid Unicode: written into a UTF-8 report as is, it would raise UnicodeEncodeError.
    text = '{"id": "b-1", "status": "SUCCESS", "substitutions": {"BRANCH_NAME": "main\\ud800", "\\udfff": "x"}, ' \
           '"steps": [{"name": "gcloud", "args": ["run", "deploy", "svc\\udc80"]}], "logUrl": "https://x/\\ud83d"}'

    build = decode(_in_message(base64.b64encode(text.encode()).decode()))

    assert build.substitutions == {"BRANCH_NAME": "main\ufffd", "\ufffd": "x"}
    assert build.steps[0].args == ("run", "deploy", "svc\ufffd")
    assert build.log_url == "https://x/\ufffd"
    assert "\ud83d\ude00" not in build.log_url  # a proper pair would be kept as the one character it is
    assert decode(_in_message(base64.b64encode(text.replace("\\ud800", "\\ud83d\\ude00").encode()).decode())
                  ).substitutions["BRANCH_NAME"] == "main\U0001F600"
