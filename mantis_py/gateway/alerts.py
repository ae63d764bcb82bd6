"""Alert rules over live query results: the pure core (docs/operations.md).

Theory of operation:
- A rule (``[[alerts]]`` in the gateway TOML) names a query, a condition over the query's result
  rows written in MQL's condition syntax (docs/mql.md#conditions, e.g. ``pps < 1000``), how many consecutive
  windows must breach before it fires, and actions (a log line, a webhook POST).
- ``parse_rules(config)`` turns the config dicts into frozen ``AlertRule`` records and raises
  ``ConfigurationError`` with one clear line for anything wrong, including a bad condition.
- ``AlertCore`` is one rule's state machine. The shell (``alert_runner.py``) feeds it each window
  result with the window's coverage (``receive_window``), the end of its query
  (``receive_complete``), a refused query (``receive_error``) and the passing of time (``poll``);
  it hands back what to do as data (``deliveries_to_send()``). It never reads the clock: ``now``
  (float seconds since the epoch) is always an argument.

States (``STATES``):

``insufficient_data``  the initial state; also whenever a window's coverage is below
                       ``min_coverage`` (default 95 %), no agent runs the query, the query ended or
                       was refused, or no window arrived for ``stale_after`` seconds. Such a window
                       never counts as breaching, so agents disappearing can never fire an alert.

Coverage is measured against the recent fleet, not only against the agents the gateway still
expects: when two of three agents disconnect, the gateway expects one and that one reports, but
the rule's coverage is 1/3, because the largest ``expected`` seen during the last
``fleet_memory`` seconds (default 60) still counts. A fleet that shrinks on purpose is evaluated
again once that memory has passed.
``ok``                 the condition was false on the last window with enough coverage.
``firing``             the condition held on ``windows`` consecutive windows with enough coverage.
``resolved``           it was firing, and then a window with enough coverage did not breach. It
                       stays ``resolved`` (not ``ok``) until it fires again, so the dashboard shows
                       that something happened.

A window *breaches* when at least one of its rows satisfies the condition. A grouped query whose
window has no rows does not breach (there is no row to test).

Transitions (``TRANSITIONS``: (state, observation) -> new state):

====================  ===========================  ============================  ======================
state                 breach (count >= windows)    clear                         insufficient
====================  ===========================  ============================  ======================
insufficient_data     firing                       ok (resolved if was firing)   insufficient_data
ok                    firing                       ok                            insufficient_data
firing                firing                       resolved                      insufficient_data
resolved              firing                       resolved                      insufficient_data
====================  ===========================  ============================  ======================

A breach with fewer than ``windows`` consecutive breaching windows leaves the state as it is.
Every change of state is recorded in ``history`` and produces one ``Notification``, which is
turned into one ``Delivery`` per action whose ``on`` set contains the new state (log actions
default to every state, webhooks to ``firing`` and ``resolved``).

The webhook body is ``Notification.to_json()``, documented there.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from typing import Literal as TLiteral

from ..errors import ConfigurationError, QueryError
from ..query.syntax import ast

__all__ = [
    "STATES",
    "TRANSITIONS",
    "Action",
    "AlertCore",
    "AlertRule",
    "Delivery",
    "Notification",
    "Predicate",
    "WindowResult",
    "check_rule",
    "compile_condition",
    "parse_rules",
]

State = TLiteral["ok", "firing", "resolved", "insufficient_data"]
Observation = TLiteral["breach", "clear", "insufficient"]
Predicate = Callable[[Mapping[str, Any]], bool]

STATES: tuple[State, ...] = ("insufficient_data", "ok", "firing", "resolved")

# (state, observation) -> next state. "breach" here means the consecutive count was reached;
# a breach below the count is a no-op handled before the table is consulted.
TRANSITIONS: dict[tuple[State, Observation], State] = {
    ("insufficient_data", "breach"): "firing",
    ("insufficient_data", "clear"): "ok",
    ("insufficient_data", "insufficient"): "insufficient_data",
    ("ok", "breach"): "firing",
    ("ok", "clear"): "ok",
    ("ok", "insufficient"): "insufficient_data",
    ("firing", "breach"): "firing",
    ("firing", "clear"): "resolved",
    ("firing", "insufficient"): "insufficient_data",
    ("resolved", "breach"): "firing",
    ("resolved", "clear"): "resolved",
    ("resolved", "insufficient"): "insufficient_data",
}

ACTION_KINDS = ("log", "webhook")
DEFAULT_ON: dict[str, frozenset[str]] = {
    "log": frozenset(STATES),
    "webhook": frozenset({"firing", "resolved"}),
}
HISTORY_MAX = 50
_CONDITION_PREFIX = "select * where "


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Action:
    """What to do when a rule changes state.

    ``kind`` is ``"log"`` (one line on the gateway's log) or ``"webhook"`` (POST the
    notification's JSON body to ``url``, retried with backoff up to ``attempts`` times, each
    attempt bounded by ``timeout`` seconds). ``on`` is the set of states that trigger it.
    """

    kind: TLiteral["log", "webhook"]
    url: str | None = None
    on: frozenset[str] = frozenset()
    attempts: int = 5
    timeout: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ConfigurationError(f"unknown alert action {self.kind!r} (use log or webhook)")
        if self.kind == "webhook" and not (
            isinstance(self.url, str) and self.url.startswith(("http://", "https://"))
        ):
            raise ConfigurationError(f"webhook action needs an http:// url, got {self.url!r}")
        if not set(self.on) <= set(STATES):
            raise ConfigurationError(f"action 'on' must name states among {', '.join(STATES)}")
        if self.attempts < 1 or self.timeout <= 0:
            raise ConfigurationError("webhook attempts must be >= 1 and timeout > 0")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One ``[[alerts]]`` table of the gateway config, validated."""

    name: str
    query: str
    condition: str
    windows: int = 1
    actions: tuple[Action, ...] = ()
    min_coverage: float = 0.95
    stale_after: float | None = None
    """Seconds without a window result before the state becomes insufficient data; None means
    three window lengths (at least 15 s), learned from the windows seen."""
    fleet_memory: float = 60.0
    """Seconds during which agents that stopped reporting still count as expected."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigurationError("an alert needs a name")
        if not isinstance(self.query, str) or not self.query.strip():
            raise ConfigurationError(f"alert {self.name!r}: needs a query")
        if not isinstance(self.condition, str) or not self.condition.strip():
            raise ConfigurationError(f"alert {self.name!r}: needs a condition")
        if not isinstance(self.windows, int) or isinstance(self.windows, bool) or self.windows < 1:
            raise ConfigurationError(f"alert {self.name!r}: windows must be a whole number >= 1")
        if not 0.0 < self.min_coverage <= 1.0:
            raise ConfigurationError(f"alert {self.name!r}: min_coverage must be in (0, 1]")
        if self.stale_after is not None and self.stale_after <= 0:
            raise ConfigurationError(f"alert {self.name!r}: stale_after must be > 0")
        if self.fleet_memory < 0:
            raise ConfigurationError(f"alert {self.name!r}: fleet_memory must be >= 0")


def _parse_action(rule: str, raw: object) -> Action:
    if isinstance(raw, str):  # shorthand: actions = ["log"]
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"alert {rule!r}: each action is a table with a type")
    known = {"type", "url", "on", "attempts", "timeout", "headers"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigurationError(f"alert {rule!r}: unknown action key {sorted(unknown)[0]!r}")
    kind = raw.get("type")
    if kind not in ACTION_KINDS:
        raise ConfigurationError(f"alert {rule!r}: action type must be log or webhook, got {kind!r}")
    on = raw.get("on")
    headers = raw.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"alert {rule!r}: action headers must be a table")
    try:
        return Action(
            kind=kind,
            url=raw.get("url"),
            on=frozenset(on) if on is not None else DEFAULT_ON[kind],
            attempts=int(raw.get("attempts", 5)),
            timeout=float(raw.get("timeout", 5.0)),
            headers=tuple((str(k), str(v)) for k, v in headers.items()),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"alert {rule!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"alert {rule!r}: bad action: {exc}") from None


def parse_rules(
    config: Sequence[Mapping[str, Any]], *, check_condition: bool = True
) -> list[AlertRule]:
    """Validate the ``[[alerts]]`` tables of the gateway config.

    Args:
        config: one dict per rule, with ``name``, ``query``, ``condition``, optional ``windows``
            (default 1), ``actions`` (list of ``{"type": "log"}`` /
            ``{"type": "webhook", "url": ...}``), ``min_coverage`` (default 0.95) and
            ``stale_after`` (seconds).
        check_condition: also parse each condition with MQL (needs ``mantis_py.query``).

    Returns:
        The rules, in config order.

    Raises:
        ConfigurationError: one clear line naming the rule and what is wrong.
    """
    rules: list[AlertRule] = []
    seen: set[str] = set()
    known = {
        "name", "query", "condition", "windows", "actions", "min_coverage", "stale_after",
        "fleet_memory",
    }
    for raw in config:
        if not isinstance(raw, Mapping):
            raise ConfigurationError("each [[alerts]] entry must be a table")
        name = raw.get("name")
        unknown = set(raw) - known
        if unknown:
            raise ConfigurationError(f"alert {name!r}: unknown key {sorted(unknown)[0]!r}")
        if name in seen:
            raise ConfigurationError(f"alert {name!r} is defined twice")
        actions_raw = raw.get("actions", [{"type": "log"}])
        if not isinstance(actions_raw, list):
            raise ConfigurationError(f"alert {name!r}: actions must be a list")
        stale = raw.get("stale_after")
        rule = AlertRule(
            name=name,  # type: ignore[arg-type]
            query=raw.get("query"),  # type: ignore[arg-type]
            condition=raw.get("condition"),  # type: ignore[arg-type]
            windows=raw.get("windows", 1),  # type: ignore[arg-type]
            actions=tuple(_parse_action(str(name), a) for a in actions_raw),
            min_coverage=float(raw.get("min_coverage", 0.95)),
            stale_after=float(stale) if stale is not None else None,
            fleet_memory=float(raw.get("fleet_memory", 60.0)),
        )
        if check_condition:
            compile_condition(rule.condition, rule=rule.name)
            check_rule(rule)
        seen.add(rule.name)
        rules.append(rule)
    return rules


def compile_condition(text: str, *, rule: str = "?") -> Predicate:
    """Compile an alert condition (docs/mql.md#conditions syntax) into a predicate over result rows.

    The condition is checked and evaluated by the query engine itself, as the WHERE clause of
    ``select * where <condition>`` run over each row, so alerts and queries can never disagree
    about what ``pps < 1000`` means (nulls, mixed types ...).

    Raises:
        ConfigurationError: the condition is not valid MQL; the message carries the column and
            a caret line relative to the condition text.
    """
    from ..query import prepare  # the engine; imported late so the core loads without it

    try:
        prepared = prepare(_CONDITION_PREFIX + text, mode="replay")
    except QueryError as exc:
        raise ConfigurationError(_condition_error(rule, text, exc)) from None
    source = prepared.source(
        app="alerts", stream="default", instance="alerts", zone=None, rng=random.Random(0)
    )

    def predicate(row: Mapping[str, Any]) -> bool:
        return bool(source.matches(dict(row), 0.0))

    return predicate


def check_rule(rule: AlertRule) -> None:
    """Check a rule's query, and that its condition names only columns the query produces.

    A condition over a name the query never outputs would silently never fire, so it is refused
    at start-up. Plain (non-aggregate) queries output events, whose fields cannot be known, so
    their conditions are not checked against columns.

    Raises:
        ConfigurationError: the query is not valid MQL, or the condition names an unknown column.
    """
    from ..query import parse, prepare

    try:
        prepared = prepare(rule.query, mode="live", apps=None)
    except QueryError as exc:
        raise ConfigurationError(
            f"alert {rule.name!r}: bad query at line {exc.line}, column {exc.column}: "
            f"{exc.message}\n{_indent(exc.snippet)}"
        ) from None
    if prepared.kind != "aggregate":
        return
    columns = [c.name for c in prepared.analysis.columns if not c.hidden]
    condition = parse(_CONDITION_PREFIX + rule.condition).where
    for prop in _properties(condition):
        names: list[str] = []
        for seg in prop.segments:
            if not isinstance(seg, str):
                break
            names.append(seg if not names else f"{names[-1]}.{seg}")
        if not any(n in columns for n in names):
            shown = names[0] if names else "?"
            raise ConfigurationError(
                f"alert {rule.name!r}: the condition names {shown!r}, which the query does not "
                f"produce (its columns: {', '.join(columns)})"
            )


def _properties(node: object) -> Iterator[ast.Property]:
    """Every Property inside an AST node (a condition), depth first."""
    if isinstance(node, ast.Property):
        yield node
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _properties(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name not in ("span", "op_span", "pattern_span"):
                yield from _properties(getattr(node, f.name))


def _indent(snippet: str) -> str:
    return "\n".join("  " + line for line in snippet.split("\n"))


def _condition_error(rule: str, text: str, exc: QueryError) -> str:
    column = exc.column - len(_CONDITION_PREFIX) if exc.line == 1 else exc.column
    column = max(1, column)
    return (
        f"alert {rule!r}: bad condition at column {column}: {exc.message}\n"
        f"  {text}\n  {' ' * (column - 1)}{'^' * max(1, exc.length)}"
    )


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One window of the rule's query: its rows and its coverage (client protocol ``meta``).

    ``reporting``/``expected`` are None when the gateway said nothing about coverage; that
    counts as insufficient data.
    """

    window: tuple[float, float] | None
    rows: tuple[Mapping[str, Any], ...]
    reporting: int | None = None
    expected: int | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A change of state of one rule. ``to_json()`` is the documented webhook body."""

    alert: str
    state: State
    previous: State
    at: float
    reason: str
    query: str
    condition: str
    window: tuple[float, float] | None = None
    rows: tuple[Mapping[str, Any], ...] = ()
    coverage: tuple[int | None, int | None] = (None, None)

    def to_json(self) -> dict[str, Any]:
        """The webhook body (version 1)::

            {"version": 1, "alert": "playback-pps", "state": "firing", "previous": "ok",
             "at": 1764236400.0, "reason": "pps < 50 held for 3 consecutive windows",
             "query": "...", "condition": "pps < 50", "window": [start, end] | null,
             "rows": [the rows that satisfied the condition (firing) or the last rows],
             "coverage": {"reporting": k, "expected": n}}

        ``at`` and the window bounds are seconds since the epoch.
        """
        return {
            "version": 1,
            "alert": self.alert,
            "state": self.state,
            "previous": self.previous,
            "at": self.at,
            "reason": self.reason,
            "query": self.query,
            "condition": self.condition,
            "window": list(self.window) if self.window is not None else None,
            "rows": [dict(r) for r in self.rows],
            "coverage": {"reporting": self.coverage[0], "expected": self.coverage[1]},
        }

    def log_line(self) -> str:
        """The line a ``log`` action writes."""
        return f"alert {self.alert}: {self.previous} -> {self.state} ({self.reason})"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One action to perform for one notification; the shell performs it."""

    action: Action
    notification: Notification


@dataclass(slots=True)
class _Counters:
    breaches: int = 0
    clears: int = 0
    windows_seen: int = 0
    insufficient_windows: int = 0


# --------------------------------------------------------------------------- the core


class AlertCore:
    """The state machine of one rule. Pure: feed it results and ``now``, read deliveries.

    Args:
        rule: the validated rule.
        predicate: the compiled condition (``compile_condition(rule.condition)``); tests may
            pass any callable over a row.
        now: the time the rule started being evaluated.
    """

    def __init__(self, rule: AlertRule, predicate: Predicate, now: float) -> None:
        self.rule = rule
        self._predicate = predicate
        self.state: State = "insufficient_data"
        self.since = now
        self.reason = "waiting for the first window"
        self.was_firing = False
        self.last_result_at: float | None = None
        self.last_window: WindowResult | None = None
        self.window_length: float | None = None
        self.counters = _Counters()
        self.history: list[dict[str, Any]] = [
            {"state": self.state, "at": now, "reason": self.reason}
        ]
        self._deliveries: list[Delivery] = []
        self._started = now
        self._fleet: deque[tuple[float, int]] = deque()  # (time, expected) within fleet_memory

    # ---------------------------------------------------------------- inputs

    def receive_window(self, result: WindowResult, now: float) -> None:
        """One window of the query's results arrived (rows plus coverage)."""
        self.last_result_at = now
        self.last_window = result
        self.counters.windows_seen += 1
        if result.window is not None:
            self.window_length = max(0.001, result.window[1] - result.window[0])
        why_not = self._coverage_problem(result, now)
        if why_not is not None:
            # a window we cannot judge breaks the run of consecutive breaching windows
            self.counters.insufficient_windows += 1
            self.counters.breaches = 0
            self.counters.clears = 0
            self._observe("insufficient", now, why_not, result)
            return
        matching = tuple(r for r in result.rows if self._holds(r))
        if matching:
            self.counters.breaches += 1
            self.counters.clears = 0
            if self.counters.breaches >= self.rule.windows:
                reason = (
                    f"{self.rule.condition} held for {self.counters.breaches} consecutive "
                    f"window{'s' if self.counters.breaches != 1 else ''}"
                )
                self._observe("breach", now, reason, result, matching)
        else:
            self.counters.breaches = 0
            self.counters.clears += 1
            self._observe("clear", now, f"{self.rule.condition} is false", result)

    def receive_complete(self, reason: str, now: float) -> None:
        """The rule's query ended (app gone, evicted ...): no data until it is resubscribed."""
        self.counters.breaches = 0
        self._observe("insufficient", now, f"query ended: {reason}", None)

    def receive_error(self, message: str, now: float) -> None:
        """The gateway refused the rule's query (for instance, no agent of the app yet)."""
        self.counters.breaches = 0
        self._observe("insufficient", now, f"query refused: {message}", None)

    def receive_waiting(self, app: str, suggestion: str | None, now: float) -> None:
        """The rule's query waits for the first agent of ``app``: insufficient data, not a
        refusal (the query runs as soon as an agent connects)."""
        self.counters.breaches = 0
        hint = f" (did you mean {suggestion}?)" if suggestion else ""
        self._observe("insufficient", now, f"waiting for agents of {app}{hint}", None)

    def poll(self, now: float) -> None:
        """Let time pass: no window for ``stale_after`` seconds means insufficient data."""
        limit = self.stale_after()
        last = self.last_result_at if self.last_result_at is not None else self._started
        if now - last > limit and self.state != "insufficient_data":
            self.counters.breaches = 0
            self._observe("insufficient", now, f"no results for {limit:g} s", None)

    def stale_after(self) -> float:
        if self.rule.stale_after is not None:
            return self.rule.stale_after
        return max(15.0, 3 * (self.window_length or 5.0))

    # ---------------------------------------------------------------- outputs

    def deliveries_to_send(self) -> list[Delivery]:
        """Swap and return the actions to perform since the last call."""
        out, self._deliveries = self._deliveries, []
        return out

    def snapshot(self) -> dict[str, Any]:
        """The rule and its state, as ``GET /v1/alerts`` shows it."""
        last = self.last_window
        return {
            "name": self.rule.name,
            "query": self.rule.query,
            "condition": self.rule.condition,
            "windows": self.rule.windows,
            "state": self.state,
            "since": self.since,
            "reason": self.reason,
            "consecutive": self.counters.breaches,
            "last_window": list(last.window) if last and last.window else None,
            "last_rows": [dict(r) for r in last.rows[:20]] if last else [],
            "coverage": (
                {"reporting": last.reporting, "expected": last.expected} if last else None
            ),
            "actions": [a.kind if a.url is None else f"{a.kind} {a.url}" for a in self.rule.actions],
            "history": list(self.history[-10:]),
        }

    # ---------------------------------------------------------------- internals

    def _holds(self, row: Mapping[str, Any]) -> bool:
        try:
            return bool(self._predicate(row))
        except Exception:  # the engine never raises; a fake predicate might
            return False

    def _coverage_problem(self, result: WindowResult, now: float) -> str | None:
        k, n = result.reporting, result.expected
        if k is None or n is None:
            return "coverage unknown"
        fleet = self._fleet
        while fleet and fleet[0][0] < now - self.rule.fleet_memory:
            fleet.popleft()
        fleet.append((now, n))
        recent = max(e for _, e in fleet)
        if recent <= 0:
            return "no agents run the query"
        if k / recent < self.rule.min_coverage:
            lost = f", {recent - n} agent(s) gone" if recent > n else ""
            return f"coverage {k}/{recent} below {self.rule.min_coverage:.0%}{lost}"
        return None

    def _observe(
        self,
        observation: Observation,
        now: float,
        reason: str,
        result: WindowResult | None,
        matching: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        new = TRANSITIONS[(self.state, observation)]
        if new == "ok" and self.state == "insufficient_data" and self.was_firing:
            new = "resolved"
        if new == self.state:
            if new != "firing":
                self.reason = reason
            return
        previous, self.state = self.state, new
        self.since, self.reason = now, reason
        if new == "firing":
            self.was_firing = True
        elif new in ("ok", "resolved"):
            self.was_firing = False
        self.history.append({"state": new, "at": now, "reason": reason})
        del self.history[:-HISTORY_MAX]
        note = Notification(
            alert=self.rule.name,
            state=new,
            previous=previous,
            at=now,
            reason=reason,
            query=self.rule.query,
            condition=self.rule.condition,
            window=result.window if result else None,
            rows=matching or (tuple(result.rows[:20]) if result else ()),
            coverage=(result.reporting, result.expected) if result else (None, None),
        )
        for action in self.rule.actions:
            if new in action.on:
                self._deliveries.append(Delivery(action, note))
