"""The secret policy (llmscen/spec/secrets.py): which names, URL parts and shapes are secret,
what a plan collects, and the one Scrubber every output goes through."""

from __future__ import annotations

import base64
import json
import pickle
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from llmscen.cli.main import cli
from llmscen.compile.compiler import compile_document
from llmscen.engine.registry import Registry
from llmscen.spec.loader import load_file
from llmscen.spec.secrets import (
    HIDDEN,
    MASK,
    Scrubber,
    is_secret_name,
    masked,
    public_url,
    redact_argv,
    secret_values,
)

SECRET_NAMES = ["Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key",
                "api-key", "api_key", "apikey", "accessToken", "access_token", "HF_TOKEN",
                "X-Auth-Token", "client_secret", "db_password", "passwd", "sig",
                "X-Amz-Signature", "credentials", "targets.llm.headers.Cookie", "api_key_2",
                "hf-token"]
PLAIN_NAMES = ["max_tokens", "prompt_tokens", "token_ids", "token_type", "key_id", "author",
               "model", "url", "messages", "content", "timeout", "Accept", "Content-Type"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_names_that_are_not_secret(name: str) -> None:
    # token counts are everywhere in LLM output: masking them would hide the results
    assert not is_secret_name(name)


@pytest.mark.parametrize(("text", "secret"), [
    ('{"access_token": "abcdef123456", "user": "x"}', "abcdef123456"),
    ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
    ("key=sk-abcdefghijklmnopqrstuvwx", "sk-abcdefghijklmnopqrstuvwx"),
    ("a key sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwx"),
    ("jwt eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJ here", "eyJhbGciOiJIUzI1"),
    ("password=hunter2hunter2&x=1", "hunter2hunter2"),
    ("GET /v1?sig=c2lnbmF0dXJl&page=2", "c2lnbmF0dXJl"),
    ("{'X-Api-Key': 'abc-123-def'}", "abc-123-def"),
    ('{\\"api_key\\": \\"k3y-in-json-in-json\\"}', "k3y-in-json-in-json"),
    ("Cookie: sess=abcdef1234", "abcdef1234"),
    ("proxy at http://bob:hunter22@proxy:3128/", "hunter22"),
    ("Basic " + base64.b64encode(b"bob:hunter22").decode(), "Ym9iOmh1bnRlcjIy"),
    ("token hf_abcdefghijklmnopqrstuvwxyz", "hf_abcdefghijklmnopqrstuvwxyz"),
])
def test_shapes_are_masked_without_knowing_the_value(text: str, secret: str) -> None:
    assert secret not in Scrubber()(text)
    assert MASK in Scrubber()(text)


@pytest.mark.parametrize("text", [
    'def greet():\n    print("Jay")  # 120 tokens of output\n',
    '{"usage": {"prompt_tokens": 12, "completion_tokens": 1024, "total_tokens": 1036}}',
    "HTTP 503 Service Unavailable: try again later",
    "the bearer of bad news; Basic understanding of tokens",
    "http://127.0.0.1:8000/v1/chat/completions?page=2",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Scrubber()(text) == text


def test_known_values_are_masked_in_every_form_a_server_echoes() -> None:
    secret = 'pl@nted "value"/1'
    scrub = Scrubber([f"Bearer {secret}"])
    for form in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1], f"Bearer {secret}"):
        assert secret not in scrub(f"you sent: {form}!") and MASK in scrub(f"x {form} y")
    assert scrub("nothing here") == "nothing here"


def test_placeholders_and_short_values_are_not_secrets() -> None:
    # `api_key: EMPTY` is how vLLM says "no key"; masking it would blank words everywhere
    scrub = Scrubber(["EMPTY", "abc", "none"])
    assert scrub("EMPTY abc none") == "EMPTY abc none"


@given(st.text(min_size=4, max_size=40).filter(lambda s: s.strip() == s and "*" not in s
                                               and s.lower() not in ("none", "null", "empty",
                                                                     "dummy", "true", "false",
                                                                     "test")),
       st.text(max_size=40), st.text(max_size=40))
def test_a_known_value_never_survives(secret: str, before: str, after: str) -> None:
    scrubbed = Scrubber([secret])(before + secret + after)
    assert secret not in scrubbed


def test_scrubber_pickles_and_extends() -> None:
    scrub = Scrubber(["plant-one-123"])
    again = pickle.loads(pickle.dumps(scrub))
    assert again == scrub and again("a plant-one-123 b") == f"a {MASK} b"
    more = scrub.with_secrets_of({"headers": {"X-Token": "plant-two-456"}})
    assert more("plant-one-123 plant-two-456") == f"{MASK} {MASK}"
    assert scrub.with_secrets_of({"body": {"max_tokens": "4096"}}) is scrub


def test_urls_lose_userinfo_and_secret_query_values() -> None:
    url = "https://user:sk-123@api.example/v1?api_key=sk-1&x=2&Signature=abc%2Bdef"
    assert public_url(url) == f"https://api.example/v1?api_key={MASK}&x=2&Signature={MASK}"
    assert public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert public_url("service:sim") == "service:sim"


def test_command_lines_lose_secret_options_set_values_and_url_parts() -> None:
    argv = ["llmscen", "run", "s.yaml", "--set", "targets.x.headers.Cookie=a=b",
            "--set", "phases.0.duration=5s", "--target", "api=http://u:pw@h/b?token=q&page=2",
            "--api-key", "k-123", "--hf-token=t-456", "--set=targets.x.api_key=v-789"]
    assert redact_argv(argv) == [
        "llmscen", "run", "s.yaml", "--set", f"targets.x.headers.Cookie={MASK}",
        "--set", "phases.0.duration=5s", "--target", f"api=http://h/b?token={MASK}&page=2",
        "--api-key", MASK, f"--hf-token={MASK}", f"--set=targets.x.api_key={MASK}"]


class Options(BaseModel):
    model: str = "m"
    api_key: SecretStr | None = None
    hf_access: SecretStr | None = None      # marked secret by its type, whatever its name
    headers: dict[str, str] = {}
    max_tokens: int = 16


def test_values_are_collected_from_data_models_urls_and_commands() -> None:
    data = {
        "targets": {"t": {"url": "http://u:url-pw-1@h/?api_key=url-q-2&page=3",
                          "headers": {"Cookie": "sid=cookie-3", "Accept": "text/plain"}}},
        "services": {"s": {"command": "vllm serve m --api-key cmd-key-4 --port {port}",
                           "env": {"HF_TOKEN": "env-tok-5"}}},
        "requests": [{"headers": {"Authorization": "Bearer req-tok-6"},
                      "body": {"messages": [{"role": "user", "content": "not-a-secret"}]},
                      "capture": {"token": "json.access_token"},
                      "steps": [{"headers": {"Authorization": "Bearer {{ token }}"}}]}],
    }
    options = Options(api_key=SecretStr("model-key-7"), hf_access=SecretStr("typed-8"),
                      headers={"X-Api-Key": "hdr-9"})
    found = secret_values(data, options)
    for value in ("url-pw-1", "url-q-2", "sid=cookie-3", "cookie-3", "cmd-key-4", "env-tok-5",
                  "req-tok-6", "model-key-7", "typed-8", "hdr-9"):
        assert value in found, value
    for value in ("not-a-secret", "json.access_token", "m", "text/plain"):
        assert value not in found
    assert not any("{{" in v for v in found)


def test_masked_dumps_keep_structure_and_expressions() -> None:
    dumped = {"headers": {"Authorization": "Bearer x", "Accept": "a"}, "api_key": HIDDEN,
              "capture": {"token": "json.access_token"}, "body": {"max_tokens": 5}}
    assert masked(dumped) == {"headers": {"Authorization": HIDDEN, "Accept": "a"},
                              "api_key": HIDDEN, "capture": {"token": "json.access_token"},
                              "body": {"max_tokens": 5}}


SCENARIO = """\
version: 1
targets:
  chat:
    plugin: openai
    url: http://127.0.0.1:9
    model: m
    api_key: ${PLANTED_KEY}
  api: {plugin: http, url: "http://127.0.0.1:9"}
phases: [{name: p, duration: 1s, arrival_rate: 1}]
requests:
  - name: c
    target: chat
    headers: {Authorization: "Bearer req-header-secret"}
    body: {messages: [{role: user, content: hi}]}
  - name: f
    target: api
    steps: [{name: s, get: /x, headers: {Cookie: "sid=step-cookie-secret"}}]
"""


def test_the_plan_carries_its_secrets_but_never_dumps_them(tmp_path: Path,
                                                           registry: Registry) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    doc = load_file(path, env={"PLANTED_KEY": "env-api-key-secret"},
                    overrides=["targets.api.headers={X-Api-Key: set-header-secret}"])
    plan = compile_document(doc, registry, {"api": "http://u:url-secret@127.0.0.1:9/?token=q-secret"})
    planted = ["env-api-key-secret", "req-header-secret", "step-cookie-secret",
               "set-header-secret", "url-secret", "q-secret"]
    assert set(planted) <= plan.secrets
    assert pickle.loads(pickle.dumps(plan)).secrets == plan.secrets   # workers get them
    shown = [json.dumps(plan.to_json()), plan.model_dump_json(), repr(plan), str(plan)]
    for text in shown:
        for secret in planted:
            assert secret not in text, (secret, text[:200])
    assert "secrets" not in plan.to_json()


DOC = Path(__file__).resolve().parent.parent / "docs" / "secrets.md"


def test_the_documented_example_hides_every_value(tmp_path: Path) -> None:
    """docs/secrets.md's example: `plan --json` and a saved command line show none of it."""
    example = re.search(r"```yaml\n(.+?)\n```", DOC.read_text(), re.S)
    assert example is not None
    scenario = tmp_path / "gateway.yaml"
    scenario.write_text(example.group(1))
    env = {"OPENAI_API_KEY": "doc-openai-key-1", "GATEWAY_KEY": "doc-gateway-key-2",
           "TENANT_TOKEN": "doc-tenant-3", "USER_TOKEN": "doc-user-token-4"}
    result = CliRunner().invoke(cli, ["plan", str(scenario), "--json", "--set",
                                      "targets.chat.headers.Cookie=session=doc-cookie-5"],
                                env=env)
    assert result.exit_code == 0, result.output
    for value in [*env.values(), "doc-cookie-5"]:
        assert value not in result.output
    headers = json.loads(result.output)["targets"][0]["options"]["headers"]
    assert headers == {"X-Api-Key": HIDDEN, "X-Tenant": MASK, "Cookie": HIDDEN}
    assert json.loads(result.output)["targets"][0]["options"]["api_key"] == HIDDEN
    argv = ["llmscen", "run", str(scenario), "--set",
            "targets.chat.headers.Cookie=session=doc-cookie-5"]
    assert redact_argv(argv)[-1] == "targets.chat.headers.Cookie=***"
