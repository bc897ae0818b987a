"""Step-ladder load shape: ``--ladder-step-users`` more users every ``--ladder-step-time`` seconds up
to ``--ladder-max-users``, that top step held for one step time, then the test stops by itself.

Locust uses any load shape class it finds in a locustfile, so the ladder lives in this file of its
own, used only when named next to the main locustfile::

    locust -f benchmarks/locustfile.py,benchmarks/locust/ladder.py --headless \\
        --ladder-step-users 50 --ladder-step-time 60 --ladder-max-users 500 ...

Each step is one point of a capacity curve (throughput and latency against users). The flags are
registered by the main locustfile; without it the shape uses their defaults (10 users every 30 s
up to 100). ``-u``, ``-r`` and ``-t`` do not apply to a shape.
"""

from __future__ import annotations

import math
from typing import Any

from locust import LoadTestShape


def ladder_step(run_time_s: float, step_users: int, step_time_s: float, max_users: int) -> int:
    """Users wanted at ``run_time_s``: 0 once the ladder is over."""
    steps = math.ceil(max_users / step_users)
    step = int(run_time_s // step_time_s)
    if step >= steps:
        return 0
    return min(max_users, (step + 1) * step_users)


class StepLadderShape(LoadTestShape):
    """Users step up every ``--ladder-step-time`` seconds to ``--ladder-max-users``, then stop."""

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        step_users = max(1, int(getattr(options, "ladder_step_users", 10)))
        step_time_s = max(0.1, float(getattr(options, "ladder_step_time", 30.0)))
        max_users = max(1, int(getattr(options, "ladder_max_users", 100)))
        shape: Any = self  # locust's LoadTestShape methods are untyped
        users = ladder_step(shape.get_run_time(), step_users, step_time_s, max_users)
        if not users:
            return None
        # start each step's users within about a second, so the step measures its full load
        return users, float(step_users)
