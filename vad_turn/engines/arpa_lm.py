"""An interpolated Witten-Bell n-gram language model, written as an ARPA file (what PocketSphinx reads).

Sentences are token lists (already normalised); each is wrapped in <s> ... </s>. Counts may be weighted
(a domain corpus counted `weight` times), so they are floats. For a context h of order k >= 1 with
weighted count c(h) and N1+(h .) distinct followers:

    lambda(h) = c(h) / (c(h) + N1+(h .))
    P(w | h)  = lambda(h) * c(h w) / c(h) + (1 - lambda(h)) * P(w | h')        (h' = h without its first word)

and the unigram backs off to the uniform distribution over the vocabulary (<s> excluded, </s> included)
the same way with h = the empty context. The ARPA file stores log10 P(w | h) for every kept n-gram and,
for every kept context, the backoff weight alpha(h) = (1 - sum_kept P(w | h)) / (1 - sum_kept P(w | h'))
(= 1 - lambda(h) when nothing is pruned), so the model is normalised after pruning too. `min_count`
prunes n-grams of the highest order whose weighted count is below it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

BOS, EOS = "<s>", "</s>"
NEG_INF_LOG10 = -99.0


class NgramLM:
    """Witten-Bell n-gram model estimated from weighted sentences. See the module docstring.

    probs[k][ngram] = P(ngram[-1] | ngram[:-1]) for the kept (k+1)-grams, backoff[context] = alpha.
    """

    def __init__(self, corpora: Iterable[tuple[Iterable[Sequence[str]], float]], *, order: int = 3,
                 min_count: float = 0.0, vocab: set[str] | None = None):
        """corpora: (sentences, weight) pairs, weight > 0; vocab: words kept (others split a sentence:
        no n-gram spans them); min_count: highest-order n-grams below this weighted count are pruned."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order = order
        counts: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(order)]
        for sentences, weight in corpora:
            if weight <= 0:
                raise ValueError(f"corpus weight must be > 0, got {weight}")
            for sent in sentences:
                for piece in _pieces(list(sent), vocab):
                    toks = [BOS] + piece + [EOS]
                    for i in range(1, len(toks)):
                        for k in range(order):
                            if i - k < 0:
                                break
                            counts[k][tuple(toks[i - k:i + 1])] += weight
        if not counts[0]:
            raise ValueError("no n-grams: the corpora are empty (or every word is outside the vocabulary)")
        self.vocab = sorted({g[0] for g in counts[0]} | {BOS})
        n_types = len(self.vocab) - 1  # predicted words: every word but <s>
        # context statistics: c(h) and N1+(h .)
        ctx_count: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(order)]
        ctx_types: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order)]
        for k in range(order):
            for g, c in counts[k].items():
                ctx_count[k][g[:-1]] += c
                ctx_types[k][g[:-1]] += 1
        self._lam = [{h: ctx_count[k][h] / (ctx_count[k][h] + ctx_types[k][h]) for h in ctx_count[k]}
                     for k in range(order)]
        self._counts, self._ctx_count, self._n_types = counts, ctx_count, n_types
        self.probs: list[dict[tuple[str, ...], float]] = []
        for k in range(order):
            keep = {g: c for g, c in counts[k].items() if k < order - 1 or k == 0 or c >= min_count}
            self.probs.append({g: self.interpolated(g) for g in keep})
        self.probs[0][(BOS,)] = 0.0  # never predicted; listed for its backoff weight
        self.backoff: dict[tuple[str, ...], float] = {}
        for k in range(order - 1):
            kept_sum: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
            for g, p in self.probs[k + 1].items():
                s = kept_sum[g[:-1]]
                s[0] += p
                s[1] += self.interpolated(g[1:])
            for h in self.probs[k]:
                a, b = kept_sum.get(h, (0.0, 0.0))
                self.backoff[h] = (1.0 - a) / (1.0 - b) if b < 1.0 else 1.0

    def interpolated(self, ngram: tuple[str, ...]) -> float:
        """P(ngram[-1] | ngram[:-1]) by the Witten-Bell recursion (any n-gram, seen or not)."""
        w = ngram[-1]
        if w == BOS:
            return 0.0
        k = len(ngram) - 1
        lower = 1.0 / self._n_types if k == 0 else self.interpolated(ngram[1:])
        h = ngram[:-1]
        lam = self._lam[k].get(h)
        if lam is None:  # unseen context: all of its mass goes to the lower order
            return lower
        return lam * self._counts[k].get(ngram, 0.0) / self._ctx_count[k][h] + (1.0 - lam) * lower

    def prob(self, ngram: Sequence[str]) -> float:
        """P(w | h) as a decoder reading the ARPA file computes it: the longest kept n-gram, with backoffs."""
        ngram = tuple(ngram[-self.order:])
        if ngram in self.probs[len(ngram) - 1]:
            return self.probs[len(ngram) - 1][ngram]
        if len(ngram) == 1:
            return 0.0  # out of vocabulary
        return self.backoff.get(ngram[:-1], 1.0) * self.prob(ngram[1:])

    def arpa(self) -> str:
        """The model as ARPA text (log10 probabilities and backoff weights, 6 decimals)."""
        lines = ["\\data\\"] + [f"ngram {k + 1}={len(self.probs[k])}" for k in range(self.order)] + [""]
        for k in range(self.order):
            lines.append(f"\\{k + 1}-grams:")
            for g in sorted(self.probs[k]):
                p = self.probs[k][g]
                lp = NEG_INF_LOG10 if p <= 0 else math.log10(p)
                row = f"{lp:.6f}\t{' '.join(g)}"
                if k < self.order - 1 and g[-1] != EOS:
                    row += f"\t{math.log10(max(self.backoff.get(g, 1.0), 1e-99)):.6f}"
                lines.append(row)
            lines.append("")
        lines.append("\\end\\")
        return "\n".join(lines) + "\n"


def _pieces(tokens: list[str], vocab: set[str] | None) -> list[list[str]]:
    """The sentence split at out-of-vocabulary words (no n-gram crosses one); empty pieces dropped."""
    if vocab is None:
        return [tokens] if tokens else []
    out, cur = [], []
    for t in tokens:
        if t in vocab:
            cur.append(t)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out
