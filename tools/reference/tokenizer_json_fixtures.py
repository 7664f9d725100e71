"""Writes byte-level BPE tokenizer.json files with the Hugging Face `tokenizers` library, and that library's own
encodings of a multilingual text set, as the parity fixture of packages/tokenizer/test/tokenizer-json.test.ts.

    python tools/reference/tokenizer_json_fixtures.py packages/tokenizer/test/fixtures

Two families of pre-tokenizer, as published models ship them:
  llama3: Sequence[Split(Llama 3 regex, Isolated), ByteLevel(use_regex=false)], no normalizer, ignore_merges;
  gpt2:   ByteLevel(use_regex=true) (GPT-2's regex), NFC normalizer (as Qwen2 has).
Needs `tokenizers` (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import json
import os
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
                  r"\s+(?!\S)|\s+")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2026, and we're serving models!",
    "def forward(self, x):\n    return self.proj(x) + 1  # residual\n\nfor i in range(10):\n    print(i ** 2)",
    "Ünïcödé, naïve café, Straße, façade — résumé.",
    "Привет, как дела? Это тест токенизатора.",
    "こんにちは世界。これはテストです。日本語の文章。",
    "你好，世界！这是一个测试。我们正在构建推理系统。",
    "مرحبا بالعالم. هذا اختبار.",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "Emoji: 🚀🔥👩‍💻🇩🇪 and 😀😀😀!",
    "    indented\tTabs\tand  double  spaces\r\nWindows newline\n\n\nmany newlines",
    "numbers 1234567 3.14159 -42 1e-9 0x1F",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
]
TESTS = CORPUS + [
    "A sentence the trainer never saw: zebra xylophone quartz.",
    "mixed 中文 and English and русский and 🚀 in one line",
    "e\u0301 (e + combining acute) vs \u00e9 (precomposed)",
    "",
    " ",
    "\n",
    "<|begin_of_text|>special tokens in text<|eot_id|>",
    "'s 've 'LL 'd CAPS'S",
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]


def build(family):
    tok = Tokenizer(models.BPE(ignore_merges=(family == "llama3")))
    if family == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.add_special_tokens(SPECIALS)
    return tok


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    expected = {"tokenizers": tokenizers.__version__, "families": {}}
    for family in ("llama3", "gpt2"):
        tok = build(family)
        path = os.path.join(out_dir, f"tokenizer-{family}.json")
        tok.save(path)
        cases = []
        for text in TESTS:
            enc = tok.encode(text, add_special_tokens=False)
            cases.append({"text": text, "ids": enc.ids, "decoded": tok.decode(enc.ids, skip_special_tokens=False)})
        expected["families"][family] = {"file": os.path.basename(path), "vocab_size": tok.get_vocab_size(), "cases": cases}
    with open(os.path.join(out_dir, "tokenizer-json-hf.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out_dir}: tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
