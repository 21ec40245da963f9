"""Drives djinn-serve with the official `openai` package, as a user's program would.

Run by serve/tests/openai_client.rs as `python3 openai_client.py BASE_URL`; prints one
JSON object of what came back, which the Rust test compares with djinn-exec's text.
"""

import json
import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
out = {}

models = client.models.list()
out["models"] = [m.id for m in models.data]
model = out["models"][0]

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=0)
out["completion"] = {
    "text": r.choices[0].text,
    "finish_reason": r.choices[0].finish_reason,
    "usage": [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens],
    "object": r.object,
}

pieces, finish = [], None
for chunk in client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, stream=True, seed=1):
    pieces.append(chunk.choices[0].text)
    finish = chunk.choices[0].finish_reason or finish
out["completion_stream"] = {"text": "".join(pieces), "chunks": len(pieces), "finish_reason": finish}

messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=10)
out["chat"] = {
    "text": r.choices[0].message.content,
    "role": r.choices[0].message.role,
    "finish_reason": r.choices[0].finish_reason,
    "usage": [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens],
    "object": r.object,
}

pieces, finish, usage, roles = [], None, None, []
stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=10, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage is not None:
        usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens]
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        pieces.append(c.delta.content or "")
        finish = c.finish_reason or finish
out["chat_stream"] = {"text": "".join(pieces), "finish_reason": finish, "usage": usage, "roles": roles}

# A stop string and the extensions a client passes through extra_body.
r = client.chat.completions.create(
    model=model, messages=messages, max_tokens=10, stop=[out["chat"]["text"][4:7]], extra_body={"top_k": 1}
)
out["chat_stop"] = {"text": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason}

# Errors come back as the client's typed exceptions, with the server's message.
try:
    client.completions.create(model=model, prompt="x", max_tokens=100000)
    out["too_long"] = None
except openai.BadRequestError as e:
    out["too_long"] = {"status": e.status_code, "code": e.code, "param": e.param, "message": e.message}
try:
    client.completions.create(model="gpt-4o", prompt="x")
    out["wrong_model"] = None
except openai.NotFoundError as e:
    out["wrong_model"] = {"status": e.status_code, "code": e.code}

print(json.dumps(out))
