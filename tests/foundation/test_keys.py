"""Key validation: no input can produce a key outside ``<prefix>/``."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eleanor_cloud import keys
from eleanor_cloud.errors import InvalidKey

PREFIX = "tenant/checkpoints"
SAFE = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=40)
ANY = st.one_of(
    st.text(max_size=60),
    SAFE,
    st.sampled_from(
        ["..", ".", "/", "a/..", "../a", "a/b", "_task", "_lease", ".git", "a\x00b", "ü", " "]
    ),
)


def _inside(prefix: str, key: str) -> bool:
    normalized = posixpath.normpath(key)
    return normalized.startswith(prefix + "/") and normalized == key


@settings(max_examples=400)
@given(task_id=ANY, stage_name=ANY)
def test_no_input_escapes_the_prefix(task_id: str, stage_name: str) -> None:
    try:
        key = keys.stage_key(PREFIX, task_id, stage_name)
    except InvalidKey as exc:
        assert exc.rule
        assert repr(exc.value) in str(exc)
        assert exc.field in ("task_id", "stage_name")
        return
    assert _inside(PREFIX, key)
    parts = key[len(PREFIX) + 1 :].split("/")
    assert parts == [task_id, stage_name + ".json"]
    assert keys.stage_name_from_key(key) == stage_name


@settings(max_examples=200)
@given(task_id=ANY)
def test_manifest_and_lease_keys_stay_inside(task_id: str) -> None:
    try:
        manifest, lease = keys.manifest_key(PREFIX, task_id), keys.lease_key(PREFIX, task_id)
    except InvalidKey:
        return
    assert _inside(PREFIX, manifest) and manifest.endswith("/_task.json")
    assert _inside(PREFIX, lease) and lease.endswith("/_lease.json")
    assert keys.stage_name_from_key(manifest) is None
    assert keys.stage_name_from_key(lease) is None


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "must not be empty"),
        ("a/b", "may contain only"),
        ("a b", "may contain only"),
        ("ü", "may contain only"),
        ("a..b", "must not contain '..'"),
        ("..", "must not contain '..'"),
        (".hidden", "must not start with"),
        ("_task", "must not start with"),
        (3, "must be a str"),
    ],
)
def test_rejections_name_value_and_rule(value: object, rule: str) -> None:
    with pytest.raises(InvalidKey) as info:
        keys.validate_stage_name(value)
    assert rule in str(info.value)
    assert repr(value) in str(info.value)
    assert info.value.value == value
    assert "stage_name" in str(info.value)


def test_length_limits() -> None:
    keys.validate_stage_name("s" * 150)
    with pytest.raises(InvalidKey, match="at most 150"):
        keys.validate_stage_name("s" * 151)
    keys.validate_task_id("t" * keys.TASK_ID_MAX_LENGTH)
    with pytest.raises(InvalidKey, match="task_id"):
        keys.validate_task_id("t" * (keys.TASK_ID_MAX_LENGTH + 1))


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ""),
        ("/", ""),
        ("a", "a"),
        ("/a/b/", "a/b"),
        ("env=prod/x.y", "env=prod/x.y"),
    ],
)
def test_prefix_normalization(prefix: str, expected: str) -> None:
    assert keys.normalize_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["a//b", "a/../b", "..", "a/./b", "a b", 5])
def test_bad_prefixes(prefix: object) -> None:
    with pytest.raises(InvalidKey, match="prefix"):
        keys.normalize_prefix(prefix)


def test_layout() -> None:
    assert keys.stage_key("", "t1", "s1") == "t1/s1.json"
    assert keys.stage_key("p", "t1", "s1") == "p/t1/s1.json"
    assert keys.manifest_key("p", "t1") == "p/t1/_task.json"
    assert keys.lease_key("p", "t1") == "p/t1/_lease.json"
    assert keys.task_prefix("p", "t1") == "p/t1/"
