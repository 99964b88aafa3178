"""A chat that keeps learning: a session with the official OpenAI client.

Start a server first, e.g. `rwttt serve path/to/checkpoint --api-key sk-local`, then run
`python examples/chat_session.py --base-url http://127.0.0.1:8000/v1 --api-key sk-local`.

A session is an owner whose TTT state (its fast weights, KV cache and token stream) outlives
one request. Each turn CONTINUES the session's stream, so send only the NEW messages of a
turn: the server renders them with the model's chat template and appends them to what the
session has already read and written (sending the whole history again would feed it twice).
The reply is the assistant's next message; the session's version counts its committed WRITEs.
"""
from __future__ import annotations

import argparse

import httpx
from openai import OpenAI


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default="EMPTY")
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0].id
    auth = {"Authorization": f"Bearer {args.api_key}"}
    session = httpx.post(f"{args.base_url}/sessions", headers=auth, json={"ttl_s": 900}).json()["id"]
    turns = [[{"role": "system", "content": "You answer in one sentence."},
              {"role": "user", "content": "My cat is called Mimi. Remember that."}],
             [{"role": "user", "content": "What is my cat called?"}]]           # only the new message
    for messages in turns:
        out = client.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                             temperature=0, extra_body={"session_id": session})
        print(f"user: {messages[-1]['content']}\nassistant: {out.choices[0].message.content!r} "
              f"({out.choices[0].finish_reason}; session version {out.model_extra['session']['version']})")
    info = httpx.get(f"{args.base_url}/sessions/{session}", headers=auth, params={"include": "tokens"}).json()
    print(f"the session read and wrote {len(info['token_ids'])} tokens; kept versions {info['kept_versions']}")
    back = info["kept_versions"][0]
    httpx.post(f"{args.base_url}/sessions/{session}/rollback", headers=auth, json={"version": back})
    print(f"rolled back to version {back}: the next turn continues from the end of the first one")
    httpx.delete(f"{args.base_url}/sessions/{session}", headers=auth)


if __name__ == "__main__":
    main()
