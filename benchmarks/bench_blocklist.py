"""Benchmark of the prompt block list (not run by CI).

    .venv/bin/python benchmarks/bench_blocklist.py [--entries 500] [--rounds 200]

A server's list of `--entries` patterns, MAX_WILDCARD_PATTERNS of them with wildcards (the most an admin
may add, each as costly as a 100-character pattern can be: `*a*a*a…`) and the rest words and phrases.
Prints the time one prompt's check takes (p50, p99, worst) for ordinary prompts of 100 to 2,500
characters, for the prompts that are worst for the wildcard regexes (one long word of the letter the
patterns repeat, the same word split by signs, 1,250 one-letter words), for the worst prompts for joining
chunks (833 two-letter words) and for stretched letters, and for 2,500 characters the process has never
folded (its per-character cache emptied before each round). The check runs on the event loop before the
acknowledgement, so these figures are what one prompt costs every other member.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.blocklist import MAX_PATTERN, MAX_WILDCARD_PATTERNS, Rules, fold_char


def server_list(entries: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    wildcards = min(MAX_WILDCARD_PATTERNS, entries)
    patterns = [("*a" * (MAX_PATTERN // 2))[: MAX_PATTERN - 2] + f"b{n % 10}" for n in range(wildcards)]
    for n in range(entries - wildcards):
        words = rng.choice((1, 1, 1, 2, 3))
        patterns.append(" ".join(_word(rng) for _ in range(words)) + ("" if n % 7 else "x"))
    return patterns


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9)))


def ordinary(rng: random.Random, length: int) -> str:
    text = []
    while sum(len(w) + 1 for w in text) < length:
        text.append(rng.choice(("the", "cat", "waves", "slowly,", "gоre-free", "sunset", "über", "2")))
    return " ".join(text)[:length]


def measure(rules: Rules, prompt: str, rounds: int, *, cold: bool = False) -> tuple[float, float, float]:
    samples = []
    for _ in range(rounds):
        if cold:
            fold_char.cache_clear()
        started = time.perf_counter()
        rules.find(prompt)
        samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(1)
    started = time.perf_counter()
    rules = Rules.build(server_list(args.entries, seed=2))
    built = (time.perf_counter() - started) * 1000
    print(
        f"{len(rules)} entries ({rules.wildcard_count} with wildcards, each 49 `*`): "
        f"compiled in {built:.1f} ms"
    )
    prompts = {
        "ordinary, 100 chars": ordinary(rng, 100),
        "ordinary, 500 chars": ordinary(rng, 500),
        "ordinary, 2500 chars": ordinary(rng, 2500),
        "one 2500-letter word 'aaa…'": "a" * 2500,
        "'a-a-a…' (1250 letters split by signs)": "-".join("a" * 1250),
        "1250 one-letter words 'a a a…'": " ".join("a" * 1250),
        "833 two-letter words 'ab ab ab…'": " ".join(["ab"] * 833)[:2500],
        "stretched words 'baaaannnnned …'": " ".join(["baaaannnnned"] * 200)[:2500],
        "ordinary with a 1 (one more reading), 2500": "1 " + ordinary(rng, 2498),
        "leet 'b4nn3d k1ll …' (1, 3, 4 in every word)": " ".join(["b4nn3d k1ll"] * 228)[:2500],
        "non-Latin, 2500 chars": "".join(rng.choice("абвгдежзийклмнопрстуфхцчшщыэюя ") for _ in range(2500)),
    }
    wildcards = MAX_WILDCARD_PATTERNS
    words_only = Rules.build(server_list(args.entries + wildcards, seed=2)[wildcards:])
    print(f"{'prompt':<42} {'p50 ms':>8} {'p99 ms':>8} {'worst ms':>9}   (then: the same list, words only)")
    for name, prompt in prompts.items():
        p50, p99, worst = measure(rules, prompt, args.rounds)
        w50, w99, _ = measure(words_only, prompt, args.rounds)
        print(f"{name:<42} {p50:8.3f} {p99:8.3f} {worst:9.3f}   {w50:.3f} / {w99:.3f}")
    unseen = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(2500))
    p50, p99, worst = measure(rules, unseen, args.rounds, cold=True)
    name = "2500 CJK characters, none seen before"
    print(f"{name:<42} {p50:8.3f} {p99:8.3f} {worst:9.3f}   (each character folded for the first time)")


if __name__ == "__main__":
    main()
