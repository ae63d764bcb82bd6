"""The MQL tokenizer: query text -> raw tokens (docs/mql.md#text-and-tokens).

Theory of operation:
- :func:`tokenize` reads the whole text left to right into :class:`RawToken` objects. It does
  not decide whether a word is a keyword, a function name or a property name: keywords are not
  reserved (§2.12), so ``parser.py`` classifies each word by what the grammar accepts there.
- Lexical errors (E105–E112, E115–E117, E119, E121, E302, E304, E305) do not raise here. The
  tokenizer stops and appends one ``ERROR`` token carrying the error, so that a grammar error
  earlier in the text is still reported first (§5.1: the first offending token wins).
- Words that look like numbers are converted here (``number`` holds the int or float); a
  malformed number or one out of range carries its error in ``number_error`` and the parser
  raises it only where the word is read as a number.
- Regex literals are read only directly after ``==~`` / ``!~``; a sample object only right after
  the word ``sample``; the count window ``|N|`` and percentages ``5%`` are ordinary words.
- E302 (more than 64 open parentheses) is checked here, before any parsing could recurse.

Everything here is linear in the length of the text and never recurses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Context
from typing import Any

from mantis_py.errors import QueryError
from mantis_py.query.syntax import ast
from mantis_py.query.syntax.diagnostics import describe_char, describe_token, query_error, suggest

__all__ = [
    "FORBIDDEN",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_LITERAL_BYTES",
    "MAX_PATH_SEGMENTS",
    "MAX_REGEXES",
    "MAX_TOKENS",
    "SAMPLE_MEMBERS",
    "SAMPLE_STRATEGIES",
    "WHITESPACE",
    "RawToken",
    "build_sample",
    "classify_number",
    "is_word_text",
    "number_fix",
    "number_shape",
    "percentage_sample",
    "salt_text",
    "tokenize",
]

WHITESPACE = " \t\n\x0b\x0c\r"
MAX_DEPTH = 64
MAX_LITERAL_BYTES = 4096
MAX_PATH_SEGMENTS = 64
MAX_INT_DIGITS = 4300
MAX_TOKENS = 2500
"""Complexity budget (E308): tokens of one query. Bounds the work of parsing, analysing and
compiling any query (a 1,000-item IN list needs about 2,000), checked while reading tokens."""
MAX_REGEXES = 64
"""Complexity budget (E308): regex literals of one query (each is compiled by RE2)."""

_UNICODE_SPACES = (
    "\u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200E)) + ("\u202f\u205f\u3000\ufeff")
)
_QUOTES = "\u2018\u2019\u201c\u201d"
FORBIDDEN = frozenset(
    [chr(c) for c in range(0x20) if chr(c) not in WHITESPACE] + ["\x7f"]
    + list(_UNICODE_SPACES) + list(_QUOTES)
)  # fmt: skip
"""Characters that are errors outside string and regex literals (E112, docs/mql.md#text-and-tokens)."""

_NON_WORD = "'\",;*()[]=!<>~"
_EXCLUDED = "".join(sorted(set(WHITESPACE) | FORBIDDEN | set(_NON_WORD) | {"&", "|"}))
_WORD = re.compile(r"(?:[^" + re.escape(_EXCLUDED) + r"]|&(?!&)|\|(?!\|))+")
_DIGITS = frozenset("0123456789")
_INDEX = re.compile(r"-?(?:0|[1-9][0-9]*)")
_INDEXISH = re.compile(r"[-+0-9.eE]+")
_WS = frozenset(WHITESPACE)
_NUMBER_START = frozenset("0123456789+-.")
_SCALAR = re.compile(r"[^" + re.escape(_EXCLUDED.replace("&", "").replace("|", "") + ":{}") + r"]+")
_LINE_BREAKS = ("\n", "\r")
_SPECIAL = frozenset(FORBIDDEN | set(";'\"(),*=!<>~[]&|"))
"""First characters that do not start a word (:meth:`_Tokenizer._run` tests these first)."""
_PATH_SEGMENTS = re.compile(r"\[(?:'([^'\n\r]*)'|\"([^\"\n\r]*)\"|(-?(?:0|[1-9][0-9]*))|\*)\]")
"""One well-formed path segment: ``['key']``, ``["key"]``, ``[0]``, ``[-1]`` or ``[*]``."""
_WORD_BLANK = re.compile("(" + _WORD.pattern + ")[" + re.escape(WHITESPACE) + "]*")
"""A word and the blanks after it (one match per plain word in :meth:`_Tokenizer._run`)."""
_SHORTCUTS = True
"""Whether :meth:`_Tokenizer._run` reads the common tokens (plain words, whole numbers, short
strings, well-formed paths) inline, the same way the general readers do; off only to test that."""
_WORD_CHECKS = frozenset("-/") | _NUMBER_START
"""First characters of the words :meth:`_Tokenizer.read_word` must look at closely (a comment,
a number); any other word is just a word unless it is followed by ``[``, starts with
``sample`` or is the single letter ``e``."""

SAMPLE_MEMBERS = ("strategy", "keys", "salt", "factor", "threshold", "extrapolate")
SAMPLE_STRATEGIES = ("RANDOM", "STICKY")
_MAX_FACTOR = 2_147_483_647


@dataclass(slots=True)
class RawToken:
    """One token as read from the text.

    ``kind`` is one of ``WORD STRING PATH PREFIX REGEX SAMPLE_OBJECT OP PUNCT BAD ERROR``.
    ``value``: a string's content, a path's segments, a prefix, a regex body, the parsed
    :class:`ast.Sample`, the canonical operator (``==``, ``!=``, ``==~``, ``!~``, ``!``, ``AND``,
    ``OR`` ...) or the punctuation character. ``BAD`` tokens (``=~``, ``===``, ``~``, a stray
    ``[`` or ``]``) are never accepted by the grammar and carry a ``hint`` for the E102 error.
    """

    kind: str
    text: str
    start: int
    end: int
    value: Any = None
    number: int | float | None = None
    number_error: QueryError | None = None
    hint: str | None = None
    error: QueryError | None = field(default=None, repr=False)


def _regex_literal(content: str) -> str | None:
    """A string's content as a regex literal that reads back to the same pattern (§2.7): a ``/``
    not taken by a backslash pair becomes ``\\/`` (which RE2 reads as a slash). None when a final
    lone backslash would take the closing slash."""
    out: list[str] = []
    i, n = 0, len(content)
    while i < n:
        c = content[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            out.append(content[i : i + 2])
            i += 2
            continue
        out.append("\\/" if c == "/" else c)
        i += 1
    return "/" + "".join(out) + "/"


# --------------------------------------------------------------------------- numbers


def number_fix(word: str) -> str:
    """The valid spelling closest to a malformed number: ``+1`` → ``1``, ``.5`` → ``0.5``,
    ``1.`` → ``1.0``, ``010`` → ``10``."""
    sign = "-" if word.startswith("-") else ""
    body = word.lstrip("+-")
    exp = ""
    cut = body.replace("E", "e").find("e")
    if cut >= 0:
        body, exp = body[:cut], body[cut:]
    if "." in body:
        ip, fp = body.split(".", 1)
        ip = ip.lstrip("0") or "0"
        return f"{sign}{ip}.{fp or '0'}{exp}"
    return f"{sign}{body.lstrip('0') or '0'}{exp}"


def _digit_run(word: str, j: int) -> int:
    """The end of the run of ASCII digits starting at ``j`` (C-speed ``lstrip``, no regex)."""
    if j >= len(word) or word[j] not in _DIGITS:
        return j
    rest = word[j:]
    return j + len(rest) - len(rest.lstrip("0123456789"))


def number_shape(word: str) -> int:
    """How ``word`` reads as a number, in one left-to-right pass (no regex, so no backtracking:
    a 16 KB run of digits followed by a letter costs one scan, not the square of its length).

    2: a valid number (``-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?``); 1: number-like but
    malformed (a ``+`` sign, a leading zero, ``.5``, ``1.``); 0: not a number at all.
    """
    n = len(word)
    i = 1 if n and word[0] in "+-" else 0
    j = _digit_run(word, i)
    int_digits = j - i
    frac_digits = -1  # no '.'
    if j < n and word[j] == ".":
        k = j + 1
        j = _digit_run(word, k)
        frac_digits = j - k
    if int_digits == 0 and frac_digits <= 0:
        return 0
    if j < n and word[j] in "eE":
        j += 1
        if j < n and word[j] in "+-":
            j += 1
        k = j
        j = _digit_run(word, k)
        if j == k:
            return 0
    if j != n:
        return 0
    strict = (
        word[0] != "+" and int_digits > 0 and frac_digits != 0
        and not (int_digits > 1 and word[i] == "0")
    )
    return 2 if strict else 1


def classify_number(
    word: str, text: str, start: int
) -> tuple[bool, int | float | None, QueryError | None]:
    """(looks like a number, value, error) for a word: E108/E109 malformed, E307 out of range."""
    shape = number_shape(word)
    if shape == 2:
        if "." in word or "e" in word or "E" in word:
            value: int | float = float(word)
            if value in (float("inf"), float("-inf")):
                return True, None, _out_of_range(word, text, start)
            return True, value, None
        if len(word.lstrip("-")) > MAX_INT_DIGITS:
            return True, None, _out_of_range(word, text, start)
        return True, int(word), None
    if shape == 1:
        fix = number_fix(word)
        body = word.lstrip("+-")
        mant = body.replace("E", "e").split("e", 1)[0]
        if word.startswith("+") or mant.startswith(".") or mant.endswith("."):
            err = query_error("E109", f"'{word}' is not a valid number", text, start, len(word),
                              suggestion=fix)  # fmt: skip
        else:
            err = query_error("E108", f"number '{word}' has a leading zero", text, start,
                              len(word), suggestion=fix, hint="MQL never reads octal")  # fmt: skip
        return True, None, err
    return False, None, None


def _out_of_range(word: str, text: str, start: int) -> QueryError:
    return query_error("E307", f"number '{describe_token(word)}' is out of range", text, start,
                       len(word))  # fmt: skip


def is_word_text(s: str) -> bool:
    """True when ``s`` is read back as exactly one word (docs/mql.md#text-and-tokens), ignoring its class."""
    if not s:
        return False
    m = _WORD.fullmatch(s)
    return m is not None and not s.startswith(("--", "//", "/*"))


# --------------------------------------------------------------------------- the tokenizer


class _Stop(Exception):
    """Internal: a lexical error was found; ``token`` is the ERROR token to append."""

    def __init__(self, error: QueryError) -> None:
        self.error = error


def tokenize(text: str) -> list[RawToken]:
    """Every token of ``text``; the list ends early with one ``ERROR`` token on a lexical error."""
    return _Tokenizer(text).run()


class _Tokenizer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.out: list[RawToken] = []
        self.depth = 0

    # ----------------------------------------------------------------- helpers

    def err(self, code: str, message: str, start: int, length: int, **kw: Any) -> _Stop:
        return _Stop(query_error(code, message, self.text, start, length, **kw))

    def skip_ws(self, i: int) -> int:
        text, n = self.text, self.n
        while i < n and text[i] in _WS:
            i += 1
        return i

    def emit(self, kind: str, start: int, end: int, value: Any = None, **kw: Any) -> None:
        self.out.append(RawToken(kind, self.text[start:end], start, end, value, **kw))

    def forbidden(self, i: int) -> _Stop:
        c = self.text[i]
        # the catalogue's one hint for E112 (docs/mql.md#errors), backticks dropped as everywhere
        hint = "use a plain space, or ' / \"" if c in _QUOTES or c in _UNICODE_SPACES else None
        return self.err("E112", f"unexpected character {describe_char(c)}", i, 1, hint=hint)

    # ----------------------------------------------------------------- main loop

    def run(self) -> list[RawToken]:
        try:
            self._run()
        except _Stop as stop:
            err = stop.error
            self.out.append(RawToken("ERROR", "", 0, 0, error=err))
        return self.out

    def _run(self) -> None:
        text, n = self.text, self.n
        i = self.skip_ws(0)
        out = self.out
        special = _SPECIAL
        word_end = _WORD.match
        word_blank = _WORD_BLANK.match
        digit_start, word_checks, shortcuts = _DIGITS, _WORD_CHECKS, _SHORTCUTS
        while i < n:
            if len(out) >= MAX_TOKENS:  # complexity budget: stop reading at once
                raise self.err("E308", f"the query has more than {MAX_TOKENS:,} tokens", i, 1,
                               hint="split it into smaller queries")  # fmt: skip
            c = text[i]
            if c not in special:  # the common case: a word
                if not shortcuts:
                    i = self.read_word(i)
                elif c in digit_start:  # a whole number, as read_word reads it, or anything else
                    end = word_end(text, i).end()  # type: ignore[union-attr]
                    if (end >= n or text[end] != "[") and text[end - 1] in digit_start and (
                        c != "0" or end - i == 1
                    ) and end - i <= MAX_INT_DIGITS and (word := text[i:end]).isdigit() \
                            and word.isascii():  # fmt: skip
                        out.append(RawToken("WORD", word, i, end, None, int(word)))
                        i = end
                    else:
                        i = self.read_word(i, end)
                elif c in word_checks:  # comments, numbers
                    i = self.read_word(i)
                elif (c == "e" or c == "E") and i + 1 < n and text[i + 1] == "[":
                    i = self.read_path(i)  # what read_word does with `e[`
                else:  # a word that read_word would take as it is, and the blanks after it
                    m = word_blank(text, i)
                    end = m.end(1)  # type: ignore[union-attr]
                    if (end < n and text[end] == "[") or (
                        c in "sS" and text[i : i + 6].lower() == "sample"
                    ) or (c in "eE" and end - i == 1):  # sample{…}, `e [`: read_word's checks
                        i = self.read_word(i)
                    else:
                        out.append(RawToken("WORD", text[i:end], i, end))
                        i = m.end()  # type: ignore[union-attr]
                        continue
            elif c == "," or c == "*":
                out.append(RawToken("PUNCT", c, i, i + 1, c))
                i += 1
            elif c in FORBIDDEN:
                raise self.forbidden(i)
            elif c == ";":
                raise self.err("E110", "';' is not part of MQL", i, 1,
                               hint="remove it; MQL has no statement terminator")  # fmt: skip
            elif c in "'\"" and shortcuts:
                end = text.find(c, i + 1)
                content = text[i + 1 : end]
                if end < 0 or "\n" in content or "\r" in content \
                        or len(content) > MAX_LITERAL_BYTES // 4:
                    i = self.read_string(i)  # the errors and the size check
                else:  # what read_string reads
                    out.append(RawToken("STRING", text[i : end + 1], i, end + 1, content))
                    i = end + 1
            elif c in "'\"":
                i = self.read_string(i)
            elif c == "(":
                self.depth += 1
                if self.depth > MAX_DEPTH:
                    raise self.err("E302", "parentheses are nested more than 64 deep", i, 1)
                self.emit("PUNCT", i, i + 1, "(")
                i += 1
            elif c == ")":
                self.depth = max(0, self.depth - 1)
                self.emit("PUNCT", i, i + 1, ")")
                i += 1
            elif c in "=!<>~[]&|":
                i = self.read_operator(i)
            else:
                i = self.read_word(i)
            if i < n and text[i] in _WS:
                i += 1
                if i < n and text[i] in _WS:
                    i = self.skip_ws(i)

    # ----------------------------------------------------------------- operators

    def read_operator(self, i: int) -> int:
        text = self.text
        two = text[i : i + 2]
        three = text[i : i + 3]
        if three in ("==~", "==+"):
            self.emit("OP", i, i + 3, three)
            if three == "==~":
                return self.after_match_op(i + 3, "==~")
            return i + 3
        if three == "===":
            self.emit("BAD", i, i + 3, hint="did you mean ==?")
            return i + 3
        if two == "==":
            self.emit("OP", i, i + 2, "==")
            return i + 2
        if two == "=~":
            self.emit("BAD", i, i + 2, hint="did you mean ==~?")
            return i + 2
        if two in ("!=", "<>"):
            self.emit("OP", i, i + 2, "!=")
            return i + 2
        if two == "!~":
            self.emit("OP", i, i + 2, "!~")
            return self.after_match_op(i + 2, "!~")
        if two in ("<=", ">="):
            self.emit("OP", i, i + 2, two)
            return i + 2
        if two == "&&":
            self.emit("OP", i, i + 2, "AND")
            return i + 2
        if two == "||":
            self.emit("OP", i, i + 2, "OR")
            return i + 2
        c = text[i]
        if c == "=":
            self.emit("OP", i, i + 1, "==")
        elif c in "<>":
            self.emit("OP", i, i + 1, c)
        elif c == "!":
            self.emit("OP", i, i + 1, "!")
        elif c == "~":
            self.emit("BAD", i, i + 1, hint="did you mean ==~ or !~?")
        elif c == "[":
            self.emit("BAD", i, i + 1, hint="a path is written e['name'], with no space after e")
        elif c == "]":
            self.emit("BAD", i, i + 1, hint="']' has no matching '['")
        else:  # a lone & or | cannot get here: they are word characters
            return self.read_word(i)
        return i + 1

    def after_match_op(self, i: int, op: str) -> int:
        """Read the regex literal that must follow ``==~`` / ``!~`` (E119 when it does not)."""
        j = self.skip_ws(i)
        if j >= self.n:
            return j
        if self.text[j] == "/":
            return self.read_regex(j)
        # not a regex: read the next token to underline it, then report E119
        k = len(self.out)
        try:
            end = self._read_one(j)
        except _Stop:
            end = j + 1
        del self.out[k:]
        bad = self.text[j:end]
        suggestion = None
        if bad[:1] in ("'", '"') and len(bad) >= 2 and bad[-1] == bad[0]:
            suggestion = _regex_literal(bad[1:-1])
        raise self.err("E119", f"{op} needs a regex literal /…/ on its right", j, end - j,
                       suggestion=suggestion)  # fmt: skip

    def _read_one(self, j: int) -> int:
        c = self.text[j]
        if c in "'\"":
            return self.read_string(j)
        if c in _NON_WORD or c in _WS or c in FORBIDDEN:
            return j + 1
        return self.read_word(j)

    # ----------------------------------------------------------------- literals

    def find_string_end(self, i: int) -> int:
        """Index of the closing quote of the string opening at ``i`` (E105 / E106)."""
        text = self.text
        q = text[i]
        end = text.find(q, i + 1)
        if end < 0:
            raise self.err("E105", "string literal is not closed", i, 1,
                           hint="strings have no escapes and end at the next matching quote")  # fmt: skip
        body = text[i + 1 : end]
        if "\n" in body or "\r" in body:
            raise self.err("E106", "a string literal cannot contain a line break", i, 1)
        return end

    def read_string(self, i: int) -> int:
        end = self.find_string_end(i)
        content = self.text[i + 1 : end]
        self.check_size(content, "string literal", i, end + 1)
        self.emit("STRING", i, end + 1, content)
        return end + 1

    def check_size(self, content: str, what: str, start: int, end: int) -> None:
        if len(content) > MAX_LITERAL_BYTES // 4 or what == "SAMPLE object":
            size = len(content.encode("utf-8", "surrogatepass"))
            if size > MAX_LITERAL_BYTES:
                raise self.err("E304", f"the {what} is {size:,} bytes; the limit is 4,096", start,
                               end - start)  # fmt: skip

    def read_regex(self, i: int) -> int:
        text, n = self.text, self.n
        j = i + 1
        while j < n:
            c = text[j]
            if c == "\\":
                j += 2
                continue
            if c == "/":
                break
            j += 1
        if j >= n:
            raise self.err("E107", "regex literal is not closed", i, 1)
        body = text[i + 1 : j]
        end = j + 1
        k = end
        while k < n and text[k].isalpha():
            k += 1
        if k > end:
            flags = text[end:k]
            fix = f"/(?{flags}){body}/" if all(f in "imsU" for f in flags) else None
            raise self.err("E115", "regex flags after the closing '/' are not supported", i,
                           k - i, suggestion=fix)  # fmt: skip
        self.check_size(body, "regex literal", i, end)
        self.regexes = getattr(self, "regexes", 0) + 1
        if self.regexes > MAX_REGEXES:
            raise self.err("E308", f"the query has more than {MAX_REGEXES} regex literals", i,
                           end - i, hint="combine them into one pattern with |")  # fmt: skip
        self.emit("REGEX", i, end, body)
        return end

    # ----------------------------------------------------------------- words and paths

    def read_word(self, i: int, end: int = 0) -> int:
        """Read the word at ``i`` (``end``: where it ends, when the caller already matched it)."""
        text = self.text
        c = text[i]
        if c in "-/" and text.startswith(("--", "//", "/*"), i):
            raise self.err("E111", "MQL has no comments", i, 2)
        if not end:
            m = _WORD.match(text, i)
            if m is None:  # cannot happen: the caller checked the first character
                raise self.forbidden(i)
            end = m.end()
        word = text[i:end]
        sample = c in "sS" and len(word) >= 6 and word[:6].lower() == "sample"
        if sample and len(word) > 6:
            sample = word[6] == "{"
            if sample:
                end = i + 6
                word = word[:6]
        nxt = text[end] if end < self.n else ""
        if nxt == "[":
            if word in ("e", "E"):
                return self.read_path(i)
            raise self.err("E117", f"'[' cannot follow the name '{word}'", i, end - i + 1,
                           suggestion=self.e117_suggestion(word, end))  # fmt: skip
        if word in ("e", "E"):
            j = self.skip_ws(end)
            if j > end and j < self.n and text[j] == "[":
                raise self.err("E116", "malformed property path: a path cannot contain spaces",
                               i, j - i + 1)  # fmt: skip
        tok = RawToken("WORD", word, i, end)
        if word[0] in _NUMBER_START:
            if word.isascii() and word.isdigit() and (word[0] != "0" or len(word) == 1) \
                    and len(word) <= MAX_INT_DIGITS:
                tok.number = int(word)  # the common case, as classify_number would read it
            else:
                looks, value, err = classify_number(word, text, i)
                if looks:
                    tok.number = value
                    tok.number_error = err
        self.out.append(tok)
        if sample:
            j = self.skip_ws(end)
            if j < self.n and text[j] == "{":
                return self.read_sample(j)
        return end

    def e117_suggestion(self, word: str, end: int) -> str | None:
        if self.text.startswith("[^", end):  # a prefix selector exists only as e[^'…'] itself
            return None
        from mantis_py.query.syntax.spelling import bracketed_path as format_property  # >1 segment

        k = len(self.out)
        try:
            self.read_path(end - 1)  # reads the brackets as if the word's last letter were `e`
            segments = self.out[k].value if len(self.out) > k and self.out[k].kind == "PATH" else None
        except _Stop:
            return None
        finally:
            del self.out[k:]
        # spelled canonically (§5.3): e['tags']['a'] for tags["a"]
        return format_property((word, *segments)) if segments is not None else None

    def read_path(self, i: int, check_only: bool = False) -> int:
        """Read ``e[...]...`` starting at the ``e`` (or, with check_only, at the word's last
        character before the first ``[``)."""
        text, n = self.text, self.n
        if not check_only and _SHORTCUTS:
            end = self.read_plain_path(i)
            if end:
                return end
        j = i + 1  # at the first '['
        segments: list[ast.Segment] = []
        prefix: str | None = None

        def bad(detail: str, at: int) -> _Stop:
            return self.err("E116", f"malformed property path: {detail}", i, max(1, at - i + 1))

        while j < n and text[j] == "[":
            if prefix is not None:
                raise bad("a prefix selector e[^'…'] takes no further segments", j)
            k = j + 1
            c = text[k] if k < n else ""
            if c in ("'", '"'):
                end = self.find_string_end(k)
                key = text[k + 1 : end]
                self.check_size(key, "quoted key", k, end + 1)
                segments.append(key)
                k = end + 1
            elif c == "*":
                segments.append(ast.STAR)
                k += 1
            elif c == "^":
                if segments:
                    raise bad("a prefix selector e[^'…'] must be the only segment", k)
                q = text[k + 1] if k + 1 < n else ""
                if q not in ("'", '"'):
                    raise bad("expected a string after '^'", k + 1)
                end = self.find_string_end(k + 1)
                prefix = text[k + 2 : end]
                self.check_size(prefix, "quoted key", k + 1, end + 1)
                k = end + 1
            elif c == "]":
                raise bad("empty segment []", k)
            elif c and c in _WS:
                raise bad("a path cannot contain spaces", k)
            elif c and c in "0123456789-+.":
                m = _INDEXISH.match(text, k)
                assert m is not None
                idx = m.group()
                if not _INDEX.fullmatch(idx):
                    if any(ch in idx for ch in ".eE+"):
                        raise bad(f"index '{idx}' is not a whole number", m.end() - 1)
                    raise bad(f"index '{idx}' has a leading zero", m.end() - 1)
                segments.append(int(idx))
                k = m.end()
            elif not c:
                raise bad("expected ']'", n - 1 if n else 0)
            else:
                raise bad("expected a string, a whole number or * inside [ ]", k)
            if k >= n or text[k] != "]":
                if k < n and text[k] in _WS:
                    after = self.skip_ws(k)
                    if after < n and text[after] == "]":
                        raise bad("a path cannot contain spaces", k)
                raise bad("expected ']'", min(k, n - 1))
            j = k + 1
        if j < n and text[j] in _WS:
            k = self.skip_ws(j)
            if k < n and text[k] == "[":
                raise bad("a path cannot contain spaces", j)
        if check_only:
            return j
        if prefix is not None:
            self.emit("PREFIX", i, j, prefix)
            return j
        if len(segments) > MAX_PATH_SEGMENTS:
            raise self.err("E305", "the path has more than 64 segments", i, j - i)
        self.emit("PATH", i, j, tuple(segments))
        return j

    def read_plain_path(self, i: int) -> int:
        """The common path, every segment a short quoted key, a whole number or ``*``, read
        with one scan per segment; 0 (nothing read) for anything else, which
        :meth:`read_path` reads with its precise errors."""
        text, n = self.text, self.n
        segments: list[ast.Segment] = []
        j = i + 1
        segment = _PATH_SEGMENTS.match
        while (m := segment(text, j)) is not None:  # anchored at j: never scans ahead
            key, key2, index = m.group(1, 2, 3)
            if key is not None or key2 is not None:
                key = key if key is not None else key2
                if len(key) > MAX_LITERAL_BYTES // 4:  # check_size may have to measure it
                    return 0
                segments.append(key)
            elif index is not None:
                segments.append(int(index))
            else:
                segments.append(ast.STAR)
            j = m.end()
        if not segments or len(segments) > MAX_PATH_SEGMENTS:
            return 0
        k = j
        while k < n and text[k] in _WS:
            k += 1
        if k < n and text[k] == "[":  # a malformed segment, or a space before one
            return 0
        self.emit("PATH", i, j, tuple(segments))
        return j

    # ----------------------------------------------------------------- the sample object

    def read_sample(self, i: int) -> int:
        end, members = _SampleReader(self, i).read()
        self.check_size(self.text[i:end], "SAMPLE object", i, end)
        sample = build_sample(members, self.text, i, end)
        self.emit("SAMPLE_OBJECT", i, end, sample)
        return end


# A JSON-ish value read from a sample object: (python value, start, end).
_Value = tuple[Any, int, int]


class _SampleReader:
    """Reads ``{ 'name': value, ... }`` without recursion (docs/mql.md#text-and-tokens); E121 when malformed."""

    def __init__(self, tok: _Tokenizer, start: int) -> None:
        self.tok = tok
        self.text = tok.text
        self.n = tok.n
        self.start = start

    def bad(self, detail: str, at: int, length: int = 1) -> _Stop:
        at = min(at, self.n)
        if at >= self.n:
            length = 0
        return self.tok.err("E121", f"malformed SAMPLE object: {detail}", at, length)

    def ws(self, j: int) -> int:
        text, n = self.text, self.n
        while j < n and text[j] in _WS:
            j += 1
        if j < n and text[j] in FORBIDDEN:
            raise self.tok.forbidden(j)
        return j

    def read(self) -> tuple[int, list[tuple[str, int, int, _Value]]]:
        """(end offset, [(name, name_start, name_end, value)])."""
        text = self.text
        members: list[tuple[str, int, int, _Value]] = []
        j = self.ws(self.start + 1)
        if j < self.n and text[j] == "}":
            return j + 1, members
        while True:
            if j >= self.n:
                raise self.bad("the object is not closed", self.start, 1)
            if text[j] not in ("'", '"'):
                raise self.bad("expected a member name in quotes", j, self.word_len(j))
            end = self.tok.find_string_end(j)
            name, ns, ne = text[j + 1 : end], j, end + 1
            j = self.ws(end + 1)
            if j >= self.n or text[j] != ":":
                raise self.bad("expected ':'", j, self.word_len(j))
            j = self.ws(j + 1)
            value, j = self.value(j)
            members.append((name, ns, ne, value))
            j = self.ws(j)
            if j < self.n and text[j] == ",":
                j = self.ws(j + 1)
                continue
            if j < self.n and text[j] == "}":
                return j + 1, members
            if j >= self.n:
                raise self.bad("the object is not closed", self.start, 1)
            raise self.bad("expected ',' or '}'", j, self.word_len(j))

    def word_len(self, j: int) -> int:
        if j >= self.n:
            return 0
        m = _WORD.match(self.text, j)
        return m.end() - j if m else 1

    def scalar(self, j: int) -> tuple[_Value, int]:
        text = self.text
        if j >= self.n:
            raise self.bad("expected a value", j, 0)
        c = text[j]
        if c in ("'", '"'):
            end = self.tok.find_string_end(j)
            return (text[j + 1 : end], j, end + 1), end + 1
        m = _SCALAR.match(text, j)
        if m is None:
            raise self.bad("expected a value", j)
        word = m.group()
        low = word.lower()
        if low in ("true", "false"):
            return (low == "true", j, m.end()), m.end()
        if low == "null":
            return (None, j, m.end()), m.end()
        looks, value, err = classify_number(word, text, j)
        if err is not None:
            raise _Stop(err)
        if looks:
            return (value, j, m.end()), m.end()
        raise self.bad("expected a value", j, len(word))

    def value(self, j: int) -> tuple[_Value, int]:
        """A scalar or a (possibly nested) list, read with an explicit stack."""
        text = self.text
        if j >= self.n or text[j] != "[":
            return self.scalar(j)
        stack: list[tuple[list[Any], int]] = []
        while True:
            if j < self.n and text[j] == "[":
                stack.append(([], j))
                j = self.ws(j + 1)
                if j < self.n and text[j] == "]":
                    items, s = stack.pop()
                    done: _Value = (items, s, j + 1)
                    j += 1
                else:
                    continue
            else:
                done, j = self.scalar(j)
            # attach `done` to the enclosing list and read what follows it
            while True:
                if not stack:
                    return done, j
                stack[-1][0].append(done[0])
                j = self.ws(j)
                if j < self.n and text[j] == ",":
                    j = self.ws(j + 1)
                    break
                if j < self.n and text[j] == "]":
                    items, s = stack.pop()
                    done = (items, s, j + 1)
                    j += 1
                    continue
                raise self.bad("expected ',' or ']'", j, self.word_len(j))


def salt_text(v: Any) -> str | None:
    """The string form (docs/mql.md#conditions) of a salt value; None when the type is not allowed."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return repr(v)
    return None


def build_sample(
    members: list[tuple[str, int, int, _Value]], text: str, start: int, end: int
) -> ast.Sample:
    """The normalised :class:`ast.Sample`; the first problem (E212) goes into ``problem``."""
    span = ast.Span(start, end)
    seen: dict[str, int] = {}
    got: dict[str, _Value] = {}
    problem: QueryError | None = None

    def fail(detail: str, s: int, e: int, suggestion: str | None = None) -> None:
        nonlocal problem
        if problem is None:
            problem = query_error("E212", f"SAMPLE: {detail}", text, s, e - s,
                                  suggestion=suggestion)  # fmt: skip

    for name, ns, ne, value in members:
        low = name.lower()
        if low not in SAMPLE_MEMBERS:
            fail(f"unknown member '{name}'", ns, ne, suggest(name, SAMPLE_MEMBERS))
            continue
        if low in seen:
            fail(f"member '{low}' is given twice", ns, ne)
            continue
        seen[low] = ns
        got[low] = value
        v, vs, ve = value
        if low == "strategy":
            if not isinstance(v, str):
                fail("strategy must be a string: RANDOM or STICKY", vs, ve)
            elif v.upper() not in SAMPLE_STRATEGIES:
                fail(f"strategy {v} is not supported; use RANDOM or STICKY", vs, ve,
                     suggest(v, SAMPLE_STRATEGIES))  # fmt: skip
        elif low == "factor":
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= _MAX_FACTOR:
                fail("factor must be a whole number from 1 to 2,147,483,647", vs, ve)
        elif low == "threshold":
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                fail("threshold must be a whole number, at least 0", vs, ve)
        elif low == "keys":
            if not isinstance(v, list) or not v or not all(isinstance(k, str) for k in v):
                fail("keys must be a non-empty list of strings", vs, ve)
        elif low == "salt":
            if salt_text(v) is None:
                fail("salt must be a string or a number", vs, ve)
        elif low == "extrapolate":
            if v is True:
                fail("extrapolate: true is not supported", vs, ve)
            elif v is not False:
                fail("extrapolate must be false", vs, ve)
    strategy_v = got.get("strategy")
    strategy = strategy_v[0].upper() if strategy_v and isinstance(strategy_v[0], str) else None
    if "strategy" not in got:
        fail("a strategy is required: RANDOM or STICKY", start, end)
    elif strategy == "STICKY" and "keys" not in got:
        fail("STICKY needs keys, a non-empty list of names", start, end)
    if problem is not None:
        return ast.Sample("RANDOM", span=span, problem=problem)
    factor = got["factor"][0] if "factor" in got else 10000
    threshold = got["threshold"][0] if "threshold" in got else 10000
    if strategy == "STICKY":
        salt = salt_text(got["salt"][0]) if "salt" in got else "0"
        assert salt is not None
        return ast.Sample("STICKY", tuple(got["keys"][0]), salt, factor, threshold, span=span)
    return ast.Sample("RANDOM", factor=factor, threshold=threshold, span=span)


def percentage_sample(
    number_text: str, value: int | float, text: str, start: int, end: int
) -> ast.Sample:
    """``SAMPLE n%`` as an :class:`ast.Sample` (docs/mql.md#sample); E213 goes into ``problem``."""
    span = ast.Span(start, end)
    canonical = repr(value) if isinstance(value, float) else str(value)
    ctx = Context(prec=MAX_LITERAL_BYTES + 10)
    d = ctx.create_decimal(number_text)
    scaled = ctx.multiply(d, 100)
    if not (0 < d <= 100) or scaled != scaled.to_integral_value():
        problem = query_error(
            "E213",
            "SAMPLE percentage must be above 0 and at most 100, with at most two decimals",
            text, start, end - start,
        )  # fmt: skip
        return ast.Sample("RANDOM", percent=canonical, span=span, problem=problem)
    return ast.Sample("RANDOM", threshold=int(scaled), percent=canonical, span=span)
