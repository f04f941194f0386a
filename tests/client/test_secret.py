"""The API key as a secret object, and where it is read from (argument, variables, key file)."""

from __future__ import annotations

import copy
import logging
import os
import pickle
from pathlib import Path

import pytest

from atomscale_bluesky.client import ApiKey, AtomscaleClient, ConfigError
from atomscale_bluesky.client.config import resolve_api_key

SECRET = "sk-SECRET-4f1c9a77e2"
KEY_VARIABLES = ("ATOMSCALE_API_KEY", "AS_API_KEY", "ATOMSCALE_API_KEY_FILE")


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_text_form_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    key = ApiKey(SECRET)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test.secret").debug("key %s %r %d", key, key, 1)
    logging.getLogger("test.secret").debug(key)
    texts = [repr(key), str(key), f"{key}", f"{key!r}", f"{key:>40}", "%s" % (key,), caplog.text]  # noqa: UP031
    texts += [repr([key]), repr({"k": key}), str((key,))]
    for text in texts:
        assert SECRET not in text
    assert repr(key) == "ApiKey('***')" and "ApiKey('***')" in caplog.text
    assert key.reveal() == SECRET


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_is_refused_with_a_reason(protocol: int) -> None:
    with pytest.raises(TypeError, match="not picklable") as info:
        pickle.dumps(ApiKey(SECRET), protocol=protocol)
    assert SECRET not in str(info.value)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [ApiKey(SECRET)]}, protocol=protocol)


def test_copies_equality_and_hash() -> None:
    key = ApiKey(SECRET)
    assert copy.copy(key) is key and copy.deepcopy({"k": key})["k"] is key
    assert key == ApiKey(SECRET) and key != ApiKey(SECRET + "x") and key != SECRET
    assert hash(key) == hash(ApiKey("anything else"))  # the hash reveals nothing
    with pytest.raises(TypeError):
        ApiKey(b"bytes")  # type: ignore[arg-type]


def test_an_api_key_object_is_accepted_as_given(no_key_env: pytest.MonkeyPatch) -> None:
    key = ApiKey(SECRET)
    assert resolve_api_key(key) == key


def test_sources_in_order(no_key_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """argument > ATOMSCALE_API_KEY > AS_API_KEY > ATOMSCALE_API_KEY_FILE."""
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    no_key_env.setenv("ATOMSCALE_API_KEY_FILE", str(key_file))
    assert resolve_api_key(None).reveal() == "from-file"
    no_key_env.setenv("AS_API_KEY", "from-as")
    assert resolve_api_key(None).reveal() == "from-as"
    no_key_env.setenv("ATOMSCALE_API_KEY", "from-atomscale")
    assert resolve_api_key(None).reveal() == "from-atomscale"
    assert resolve_api_key("from-argument").reveal() == "from-argument"


@pytest.mark.parametrize("content", [SECRET, SECRET + "\n", SECRET + "\r\n", f"  {SECRET}\n\n"])
def test_key_file_drops_the_trailing_newline(
    no_key_env: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    key_file = tmp_path / "credential"
    key_file.write_bytes(content.encode())
    key_file.chmod(0o400)
    no_key_env.setenv("ATOMSCALE_API_KEY_FILE", str(key_file))
    assert resolve_api_key(None).reveal() == SECRET
    with AtomscaleClient(endpoint="http://127.0.0.1:9", spool_dir=tmp_path / "s",
                         clock_sync=False) as client:  # fmt: skip
        assert client.config.api_key == ApiKey(SECRET)


def _file_error(no_key_env: pytest.MonkeyPatch, path: Path) -> str:
    no_key_env.setenv("ATOMSCALE_API_KEY_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        resolve_api_key(None)
    return str(info.value)


def test_key_file_errors_name_the_variable_never_the_content(
    no_key_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = _file_error(no_key_env, tmp_path / "nope")
    assert "ATOMSCALE_API_KEY_FILE" in missing and "cannot be read" in missing
    (tmp_path / "empty").write_text("\n")
    assert "empty" in _file_error(no_key_env, tmp_path / "empty")
    assert "cannot be read" in _file_error(no_key_env, tmp_path)  # a directory
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    assert SECRET not in _file_error(no_key_env, binary)
    spaced = tmp_path / "spaced"
    spaced.write_text(SECRET + " tail\n")
    text = _file_error(no_key_env, spaced)
    assert "ATOMSCALE_API_KEY_FILE" in text and SECRET not in text
    huge = tmp_path / "huge"
    huge.write_text(SECRET * 1000)
    text = _file_error(no_key_env, huge)
    assert "too long" in text and SECRET not in text
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp_path / "unreadable"
        unreadable.write_text(SECRET)
        unreadable.chmod(0)
        text = _file_error(no_key_env, unreadable)
        assert "Permission denied" in text and SECRET not in text


def test_no_key_anywhere_names_every_source(no_key_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_api_key(None)
    for name in KEY_VARIABLES:
        assert name in str(info.value)
