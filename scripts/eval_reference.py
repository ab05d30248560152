#!/usr/bin/env python3
"""`zett eval`'s protocol computed independently, for stories260K on TinyStories text.

  /usr/bin/python3 scripts/eval_reference.py --text ../shared/data/text/tinystories/dev.jsonl \
      --max-bytes 20000 --out tests/fixtures/lm/eval/stories260K-dev-20000.json

Independent of the C# code on both sides that matter: the text is tokenized with llama2.c's own
encoder (run.c `encode`: BOS, the dummy-prefix space, UTF-8 characters looked up in tok512.bin
or byte-fallback <0xXX> = byte + 3, then repeatedly the highest-scoring adjacent merge), and
the model is scripts/golden_lm.py's float64 PyTorch Llama over assets/stories260K's weights.
Protocol (docs/models.md): documents in order, the one crossing --max-bytes cut at the last
UTF-8 character boundary inside the cap; each document encoded with BOS; consecutive
non-overlapping windows of --context tokens (default min(1024, 512) = 512); each token of a
window after its first is predicted; predicted special tokens (<unk>, <s>, </s>) are not
counted; bits per byte = Σ loss / ln 2 / Σ UTF-8 bytes. Needs only torch.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_lm import llama_like  # noqa: E402

SPECIAL = {0, 1, 2}


def read_tok512(path):
    with open(path, "rb") as f:
        data = f.read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off, pieces, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        off += n
        scores.append(score)
    return pieces, scores


def encode(text, pieces, scores):
    lookup = {p: i for i, p in enumerate(pieces)}
    ids = [1]
    if text:
        ids.append(lookup[b" "])
    for ch in text:
        b = ch.encode("utf-8")
        if b in lookup:
            ids.append(lookup[b])
        else:
            ids.extend(x + 3 for x in b)
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for i in range(len(ids) - 1):
            merged = pieces[ids[i]] + pieces[ids[i + 1]]
            j = lookup.get(merged)
            if j is not None and scores[j] > best:
                best, best_id, best_i = scores[j], j, i
        if best_i < 0:
            return ids
        ids[best_i:best_i + 2] = [best_id]


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            assert info["dtype"] == "F32", name
            a, b = info["data_offsets"]
            f.seek(base + a)
            t = torch.frombuffer(bytearray(f.read(b - a)), dtype=torch.float32)
            out[name] = t.reshape(info["shape"]).double()
        return out


def documents(path, max_bytes):
    docs, total = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            text = json.loads(line)["text"]
            size = len(text.encode("utf-8"))
            if max_bytes is not None and total + size > max_bytes:
                room, cut = max_bytes - total, ""
                for ch in text:
                    if len((cut + ch).encode("utf-8")) > room:
                        break
                    cut += ch
                if room > 0:
                    docs.append(cut)
                return docs
            docs.append(text)
            total += size
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--max-bytes", type=int)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--model", default="assets/stories260K")
    ap.add_argument("--tok512", default="../shared/data/models/stories260K/tok512.bin")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(os.path.join(args.model, "model.safetensors"))
    pieces, scores = read_tok512(args.tok512)
    docs = documents(args.text, args.max_bytes)
    loss, tokens, encoded = 0.0, 0, 0
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    for d in docs:
        ids = encode(d, pieces, scores)
        encoded += len(ids)
        for s in range(0, len(ids), args.context):
            win = ids[s:s + args.context]
            if len(win) < 2:
                continue
            with torch.no_grad():
                logits = llama_like(w, cfg, torch.tensor(win), "llama")
            logp = torch.log_softmax(logits, dim=-1)
            for i in range(len(win) - 1):
                if win[i + 1] in SPECIAL:
                    continue
                loss -= logp[i, win[i + 1]].item()
                tokens += 1
    result = dict(model=args.model, text=args.text, max_bytes=args.max_bytes,
                  context=args.context, documents=len(docs), bytes=nbytes, tokens=tokens,
                  encoded_tokens=encoded, loss_nats=loss,
                  bits_per_byte=loss / math.log(2) / nbytes, tokens_per_byte=tokens / nbytes,
                  perplexity=math.exp(loss / tokens))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
