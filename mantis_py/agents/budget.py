"""The agent's CPU budget: event sampling, compile CPU and the subscription churn cap. Pure.

Three pieces of state, all fed with ``now`` by the runner:

- ``sample_rate``: the fraction of events the pipeline processes. :meth:`CpuBudget.report_cpu`
  lowers it in proportion when the runner's CPU use exceeds ``cpu_budget`` and raises it by 1.5x
  a second when use is well below; every event it skips is counted as lost (``cpu_budget``).
- compile CPU: :meth:`CpuBudget.report_control_cpu` pays the CPU spent handling gateway messages
  (compiling queries, mostly) from a bucket earned at ``cpu_budget`` seconds per second (at most
  ``compile_cpu_burst_s``).
- new queries: a token bucket (``subscribe_rate_per_s``, burst ``subscribe_burst``).

:meth:`CpuBudget.admit_query` refuses a new query while either bucket is empty, so a gateway that
keeps subscribing and unsubscribing gets refusals (``limit_churn``) instead of the host's CPU.
"""

from __future__ import annotations

from .config import AgentConfig

__all__ = ["CpuBudget"]


class CpuBudget:
    """Sampling rate and compile/churn buckets (runner thread only; ``sample_rate`` is read by
    statistics snapshots from any thread)."""

    __slots__ = ("_compile_cpu", "_compile_last", "_config", "_cpu_mark", "_sub_last",
                 "_sub_tokens", "sample_rate")  # fmt: skip

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self.sample_rate = 1.0
        self._cpu_mark: tuple[float, float] | None = None
        self._sub_tokens = float(config.subscribe_burst)
        self._sub_last: float | None = None
        self._compile_cpu = config.compile_cpu_burst_s
        self._compile_last: float | None = None

    def forget_cpu_mark(self) -> None:
        """The link closed: the next :meth:`report_cpu` starts a new measurement."""
        self._cpu_mark = None

    def report_cpu(self, now: float, cpu_seconds: float) -> None:
        """Feed the runner's cumulative CPU time; adjusts ``sample_rate`` to the budget."""
        mark = self._cpu_mark
        if mark is None or now < mark[0]:
            self._cpu_mark = (now, cpu_seconds)
            return
        dt = now - mark[0]
        if dt < 1.0:
            return
        usage = max(0.0, cpu_seconds - mark[1]) / dt
        budget = self._config.cpu_budget
        if usage > budget:
            self.sample_rate = max(
                self._config.min_sample_rate, self.sample_rate * budget / usage * 0.9
            )
        elif usage < budget * 0.5 and self.sample_rate < 1.0:
            self.sample_rate = min(1.0, self.sample_rate * 1.5)
        self._cpu_mark = (now, cpu_seconds)

    def report_control_cpu(self, now: float, cpu_seconds: float) -> None:
        """Pay ``cpu_seconds`` spent on gateway messages from the compile bucket."""
        cfg = self._config
        last = self._compile_last
        if last is not None and now > last:
            self._compile_cpu = min(cfg.compile_cpu_burst_s,
                                    self._compile_cpu + (now - last) * cfg.cpu_budget)
        self._compile_last = now if last is None else max(last, now)
        self._compile_cpu -= cpu_seconds

    def control_overdrawn(self, now: float) -> bool:
        """Whether gateway messages took more than their budget recently: runners then stop
        reading the link until it is paid back (the rest waits in the socket: backpressure on a
        gateway flooding the agent with subscribes)."""
        self.report_control_cpu(now, 0.0)
        return self._compile_cpu < 0.0

    def admit_query(self, now: float) -> bool:
        """Whether a new query may be compiled now (takes a token when it may)."""
        cfg = self._config
        if self._sub_last is not None:
            self._sub_tokens = min(float(cfg.subscribe_burst), self._sub_tokens + max(
                0.0, now - self._sub_last) * cfg.subscribe_rate_per_s)
        self._sub_last = now
        self.report_control_cpu(now, 0.0)
        if self._sub_tokens < 1.0 or self._compile_cpu < 0.0:
            return False
        self._sub_tokens -= 1.0
        return True
