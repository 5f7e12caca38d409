//! The four algorithms, as pure functions of a state, the time and a cost.
//!
//! This is the embedded backend's implementation; `scripts/rate_limit.lua`
//! is the same arithmetic on Redis, in the same order (both in IEEE
//! doubles), so the two backends admit exactly the same calls. All times
//! are microseconds.

use std::collections::VecDeque;

use super::{Algorithm, Policy};

/// The stored state of one policy for one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Admission times of the last window, oldest first.
    Log(VecDeque<u64>),
    /// Window index, its count and the previous window's count.
    Sliding {
        window: u64,
        current: u64,
        previous: u64,
    },
    /// Window index and its count.
    Fixed { window: u64, count: u64 },
    /// Theoretical arrival time.
    Gcra { tat: u64 },
}

/// What a policy says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    pub(crate) remaining: u64,
    pub(crate) retry_after_us: u64,
    pub(crate) reset_after_us: u64,
}

/// The verdict, and the state to store (with its expiry, absolute µs) if
/// the call is consumed.
pub(crate) struct Evaluation {
    pub(crate) verdict: Verdict,
    pub(crate) next: Option<(State, u64)>,
}

/// Evaluates `policy` for a call of `cost` at `now` over `state` (`None`:
/// no state stored). `state` may be trimmed in place (old log entries), as
/// the script does.
pub(crate) fn evaluate(
    policy: &Policy,
    state: &mut Option<State>,
    now: u64,
    cost: u64,
) -> Evaluation {
    let limit = policy.limit;
    let window = policy.window_micros();
    match policy.algorithm {
        Algorithm::SlidingLog => sliding_log(state, now, cost, limit, window),
        Algorithm::SlidingWindow => sliding_window(state, now, cost, limit, window),
        Algorithm::FixedWindow => fixed_window(state, now, cost, limit, window),
        Algorithm::Gcra => gcra(state, now, cost, limit, window, policy.effective_burst()),
    }
}

fn verdict(allowed: bool, remaining: f64, retry: f64, reset: f64) -> Verdict {
    Verdict {
        allowed,
        remaining: remaining.max(0.0).floor() as u64,
        retry_after_us: retry.max(0.0).ceil() as u64,
        reset_after_us: reset.max(0.0).ceil() as u64,
    }
}

fn sliding_log(
    state: &mut Option<State>,
    now: u64,
    cost: u64,
    limit: u64,
    window: u64,
) -> Evaluation {
    let mut log = match state.take() {
        Some(State::Log(log)) => log,
        _ => VecDeque::new(),
    };
    // Entries at or before now - window have left the window.
    while log
        .front()
        .is_some_and(|&t| (t as i128) <= now as i128 - window as i128)
    {
        log.pop_front();
    }
    let n = log.len() as u64;
    let allowed = n + cost <= limit && cost <= limit;
    let result = if allowed {
        let mut next = log.clone();
        next.extend(std::iter::repeat_n(now, cost as usize));
        Evaluation {
            verdict: verdict(true, (limit - n - cost) as f64, 0.0, window as f64),
            next: Some((State::Log(next), now + window)),
        }
    } else {
        let retry = if cost <= limit {
            let k = (n + cost - limit) as usize;
            (log[k - 1] + window) as f64 - now as f64
        } else {
            window as f64
        };
        let reset = log
            .back()
            .map_or(0.0, |&t| (t + window) as f64 - now as f64);
        Evaluation {
            verdict: verdict(false, limit as f64 - n as f64, retry, reset),
            next: None,
        }
    };
    *state = Some(State::Log(log));
    result
}

fn sliding_window(
    state: &mut Option<State>,
    now: u64,
    cost: u64,
    limit: u64,
    window: u64,
) -> Evaluation {
    let idx = now / window;
    let (mut current, mut previous) = (0u64, 0u64);
    if let Some(State::Sliding {
        window: w,
        current: c,
        previous: p,
    }) = *state
    {
        if w + 1 == idx {
            previous = c;
        } else if w == idx {
            (current, previous) = (c, p);
        }
    }
    let (cur, prev, win, lim, cst) = (
        current as f64,
        previous as f64,
        window as f64,
        limit as f64,
        cost as f64,
    );
    let elapsed = (now - idx * window) as f64;
    let estimate = prev * (win - elapsed) / win + cur;
    let allowed = estimate + cst <= lim;
    let used = if allowed { current + cost } else { current };
    let remaining = lim - estimate - if allowed { cst } else { 0.0 };
    let reset = if used > 0 {
        ((idx + 2) * window - now) as f64
    } else if previous > 0 {
        ((idx + 1) * window - now) as f64
    } else {
        0.0
    };
    if allowed {
        let next = State::Sliding {
            window: idx,
            current: used,
            previous,
        };
        return Evaluation {
            verdict: verdict(true, remaining, 0.0, reset),
            next: Some((next, (idx + 2) * window)),
        };
    }
    let retry = if cost > limit {
        win
    } else if current + cost <= limit {
        let e = win * (1.0 - (lim - cur - cst) / prev);
        (e - elapsed).ceil()
    } else {
        let e = if current > 0 {
            (win * (1.0 - (lim - cst) / cur)).max(0.0)
        } else {
            0.0
        };
        (win - elapsed) + e.ceil()
    };
    Evaluation {
        verdict: verdict(false, remaining, retry, reset),
        next: None,
    }
}

fn fixed_window(
    state: &mut Option<State>,
    now: u64,
    cost: u64,
    limit: u64,
    window: u64,
) -> Evaluation {
    let idx = now / window;
    let n = match *state {
        Some(State::Fixed { window: w, count }) if w == idx => count,
        _ => 0,
    };
    let reset = ((idx + 1) * window - now) as f64;
    if n + cost <= limit {
        return Evaluation {
            verdict: verdict(true, (limit - n - cost) as f64, 0.0, reset),
            next: Some((
                State::Fixed {
                    window: idx,
                    count: n + cost,
                },
                (idx + 1) * window,
            )),
        };
    }
    let retry = if cost > limit { window as f64 } else { reset };
    Evaluation {
        verdict: verdict(false, limit as f64 - n as f64, retry, reset),
        next: None,
    }
}

fn gcra(
    state: &mut Option<State>,
    now: u64,
    cost: u64,
    limit: u64,
    window: u64,
    burst: u64,
) -> Evaluation {
    let interval = window as f64 / limit as f64;
    let tolerance = burst as f64 * interval;
    let stored = match *state {
        Some(State::Gcra { tat }) => tat,
        _ => now,
    };
    let tat = stored.max(now) as f64;
    let now_f = now as f64;
    let new_tat = (tat + cost as f64 * interval).ceil();
    if new_tat - now_f <= tolerance {
        let remaining = (tolerance - (new_tat - now_f)) / interval;
        return Evaluation {
            verdict: verdict(true, remaining, 0.0, new_tat - now_f),
            next: Some((
                State::Gcra {
                    tat: new_tat as u64,
                },
                new_tat as u64,
            )),
        };
    }
    let retry = if cost <= burst {
        (new_tat - now_f - tolerance).ceil()
    } else {
        window as f64
    };
    let remaining = (tolerance - (tat - now_f)) / interval;
    Evaluation {
        verdict: verdict(false, remaining, retry, tat - now_f),
        next: None,
    }
}
