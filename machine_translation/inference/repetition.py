"""The search's guard against degenerate output: a piece, or a group of up to 4 pieces
("d'un d'un d'un d'un"), repeated 4 or more times in a row, or a character 5 or more times
in a row, is never emitted unless the source has such a run itself ("Un COLLLLLLLOLLLL..."
for an ALL-CAPS input the model never saw). A fourth copy of a group is refused as soon as
it would start.

`PieceTable` describes every vocabulary entry once (the character runs at its start and
end, its longest run); `RepeatGuard` is a value the search carries beside its cache, one row
per hypothesis: it bans the continuations that would make a run too long (`ban`), follows
the chosen tokens (`advance`) and the search's reordering (`select`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch
from torch import Tensor

MAX_TOKEN_REPEAT = 3  # a piece, or a group of up to MAX_GROUP pieces, may appear at most 3 times in a row
MAX_GROUP = 4
MAX_CHAR_RUN = 4  # a character may appear at most 4 times in a row
_SPECIAL = re.compile(r"^<(pad|unk|bos|eos|0x[0-9A-Fa-f]{2})>$")  # specials and byte pieces: no text


def surface(piece: str) -> str:
    """The text a SentencePiece or character piece stands for ('▁' is a space)."""
    return "" if _SPECIAL.match(piece) else piece.replace("\u2581", " ")


def runs(items) -> list[tuple[object, int]]:
    """[(item, run length), ...] of a text or a list of ids: "aab" -> [("a", 2), ("b", 1)]."""
    out: list[tuple[object, int]] = []
    for c in items:
        if out and out[-1][0] == c:
            out[-1] = (c, out[-1][1] + 1)
        else:
            out.append((c, 1))
    return out


@dataclass(frozen=True)
class PieceTable:
    """Per vocabulary entry v (tensors of shape (V,)); characters are numbered 0..C-1, -1 = none."""

    surfaces: tuple[str, ...]
    chars: dict  # character -> number
    lead_char: Tensor  # the character of the run the piece starts with
    lead_len: Tensor
    tail_char: Tensor  # the character of the run it ends with
    tail_len: Tensor
    uniform: Tensor  # bool: the whole piece is one run
    inner_char: Tensor  # the character of its longest run
    inner_len: Tensor
    max_lead: Tensor  # (C,) per character, the longest run a piece starts with
    long_ids: Tensor  # (k,) the few pieces holding a run over MAX_CHAR_RUN themselves

    @classmethod
    def from_pieces(cls, pieces: list[str]) -> PieceTable:
        surfaces = tuple(surface(p) for p in pieces)
        chars = {c: i for i, c in enumerate(sorted({c for s in surfaces for c in s}))}
        columns = []
        for s in surfaces:
            r = runs(s)
            if not r:
                columns.append((-1, 0, -1, 0, False, -1, 0))
                continue
            inner = max(r, key=lambda x: x[1])
            columns.append((chars[r[0][0]], r[0][1], chars[r[-1][0]], r[-1][1], len(r) == 1, chars[inner[0]], inner[1]))
        lc, ll, tc, tl, uni, ic, il = (torch.tensor(col) for col in zip(*columns))
        max_lead = torch.zeros(len(chars), dtype=torch.long).scatter_reduce(0, lc.clamp(min=0), ll, "amax")
        return cls(surfaces, chars, lc, ll, tc, tl, uni, ic, il, max_lead, (il > MAX_CHAR_RUN).nonzero().squeeze(1))

    def source_runs(self, sources: list[list[str]]) -> tuple[Tensor, Tensor]:
        """What each source (the texts of its pieces, in any vocabulary) has itself, so its
        translation may have it too: (B, C + 1) characters of this vocabulary with a run over
        MAX_CHAR_RUN, (B, V) entries whose text is repeated over MAX_TOKEN_REPEAT times."""
        chars = torch.zeros(len(sources), len(self.chars) + 1, dtype=torch.bool)  # last column: "no character"
        tokens = torch.zeros(len(sources), len(self.surfaces), dtype=torch.bool)
        ids_of = {}
        for i, s in enumerate(self.surfaces):
            ids_of.setdefault(s, []).append(i)
        for b, pieces in enumerate(sources):
            for c, n in runs("".join(pieces)):
                if n > MAX_CHAR_RUN and c in self.chars:
                    chars[b, self.chars[c]] = True
            for piece, n in runs(pieces):
                if n > MAX_TOKEN_REPEAT and piece:
                    tokens[b, ids_of.get(piece, [])] = True
        return chars, tokens


@dataclass(frozen=True)
class RepeatGuard:
    """The runs at the end of each hypothesis: rows (N,) of the search's current batch."""

    table: PieceTable
    allowed_chars: Tensor  # (B, C + 1) per source sentence
    allowed_tokens: Tensor  # (B, V)
    sentence: Tensor  # (N,) the source sentence of each row
    tail_char: Tensor  # (N,) the character of the run the hypothesis ends with (-1: none)
    tail_len: Tensor  # (N,)
    recent: Tensor  # (N, MAX_TOKEN_REPEAT * MAX_GROUP) the last tokens of each hypothesis (-1: none yet)

    @classmethod
    def start(cls, table: PieceTable, sources: list[list[str]], device: torch.device) -> RepeatGuard:
        """One row per source sentence (the texts of its pieces), nothing decoded yet."""
        chars, tokens = table.source_runs(sources)
        B = len(sources)
        none = torch.full((B,), -1, dtype=torch.long, device=device)
        recent = torch.full((B, MAX_TOKEN_REPEAT * MAX_GROUP), -1, dtype=torch.long, device=device)
        return cls(table if table.lead_char.device == device else _to(table, device), chars.to(device),
                   tokens.to(device), torch.arange(B, device=device), none, torch.zeros_like(none), recent)

    def ban(self, logp: Tensor) -> Tensor:
        """logp (N, V), in place, with the continuations that would make a run too long at -inf.
        Only the rows whose run could grow too long are looked at across the vocabulary: this
        runs at every decoding step."""
        t, C = self.table, self.allowed_chars.size(1) - 1
        tail = torch.where(self.tail_char < 0, C, self.tail_char)  # (N,)
        risky = ((self.tail_char >= 0) & (self.tail_len + t.max_lead[tail.clamp(max=C - 1)] > MAX_CHAR_RUN)
                 & ~self.allowed_chars[self.sentence, tail])  # (N,): the source does not have this run itself
        rows = risky.nonzero().squeeze(1)
        if rows.numel():
            hit = ((t.lead_char[None, :] == self.tail_char[rows, None])
                   & (self.tail_len[rows, None] + t.lead_len[None, :] > MAX_CHAR_RUN))  # (r, V)
            logp[rows] = logp[rows].masked_fill(hit, float("-inf"))
        if t.long_ids.numel():
            ok = self.allowed_chars[self.sentence][:, t.inner_char[t.long_ids]]  # (N, k)
            logp[:, t.long_ids] = logp[:, t.long_ids].masked_fill(~ok, float("-inf"))
        N = self.recent.size(0)
        for n in range(1, MAX_GROUP + 1):  # the last 3 groups of n tokens are one group repeated: refuse a 4th
            copies = self.recent[:, -MAX_TOKEN_REPEAT * n :].view(N, MAX_TOKEN_REPEAT, n)
            loop = (copies == copies[:, :1]).all(dim=2).all(dim=1) & (copies[:, 0] >= 0).all(dim=1)  # (N,)
            start = self.recent[:, -n]  # the token a 4th copy would begin with
            if n == 1:  # a single piece the source itself repeats is allowed
                loop &= ~self.allowed_tokens[self.sentence, start.clamp(min=0)]
            else:  # a group of one piece repeated is the n == 1 case
                loop &= (copies[:, 0] != copies[:, 0, :1]).any(dim=1)
            rows = loop.nonzero().squeeze(1)
            logp[rows, start[rows]] = float("-inf")
        return logp

    def advance(self, tokens: Tensor) -> RepeatGuard:
        """The rows after appending tokens (N,)."""
        t = self.table
        extend = t.uniform[tokens] & (t.lead_char[tokens] == self.tail_char) & (self.tail_char >= 0)
        return replace(
            self,
            tail_char=torch.where(extend, self.tail_char, t.tail_char[tokens]),
            tail_len=torch.where(extend, self.tail_len + t.lead_len[tokens], t.tail_len[tokens]),
            recent=torch.cat([self.recent[:, 1:], tokens[:, None]], dim=1),
        )

    def select(self, index: Tensor) -> RepeatGuard:
        """Rows `index` (N',) of the current rows: beam search's parents, or the rows still decoding."""
        return replace(self, sentence=self.sentence[index], tail_char=self.tail_char[index],
                       tail_len=self.tail_len[index], recent=self.recent[index])


def _to(table: PieceTable, device: torch.device) -> PieceTable:
    return replace(table, **{name: getattr(table, name).to(device) for name in
                             ("lead_char", "lead_len", "tail_char", "tail_len", "uniform", "inner_char", "inner_len",
                              "max_lead", "long_ids")})
