//! The four algorithms, as pure functions of a state, the time and a cost.
//!
//! This is the embedded backend's implementation; `scripts/rate_limit.lua`
//! is the same algorithms on Redis, so the two backends admit exactly the
//! same calls with the same figures. Decisions are exact on both: counts
//! and times are whole numbers below 2^53 (what [`Policy::validate`]
//! ensures), which the script's IEEE doubles hold exactly, and every
//! comparison against a limit is written as `cost <= limit - used`, whose
//! operands are all below 2^53. Where a figure is a true fraction (the
//! sliding window's estimate, GCRA's `remaining`) both compute it with the
//! same double operations in the same order. Times are microseconds, and
//! GCRA's are nanoseconds.
//!
//! A cost of 0 is always allowed and writes nothing. Costs above a
//! policy's capacity never get here: the engine refuses them first.

use std::collections::VecDeque;

use super::{Algorithm, Policy};

/// The stored state of one policy for one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// The admitted calls of the last window, oldest first.
    Log(VecDeque<LogEntry>),
    /// Window index, its count and the previous window's count.
    Sliding {
        window: u64,
        current: u64,
        previous: u64,
    },
    /// Window index and its count.
    Fixed { window: u64, count: u64 },
    /// Theoretical arrival time, nanoseconds since the epoch.
    Gcra { tat: u128 },
}

/// One entry of the sliding log: the calls admitted at one instant, with
/// their total weight, and the running total of weights up to and
/// including them (so the weight in any span of entries is a difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub(crate) at: u64,
    pub(crate) weight: u64,
    pub(crate) cum: u128,
}

/// What a policy says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    pub(crate) remaining: u64,
    pub(crate) retry_after_us: u64,
    pub(crate) reset_after_us: u64,
}

/// How a consumed call changes the stored state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Update {
    /// The state becomes this one.
    Replace(State),
    /// The log's newest entry becomes this one: it replaces the newest
    /// entry if that has the same time (calls at one instant are one
    /// entry), or else is appended. Applying it twice changes nothing, as
    /// the script's writes.
    Log(LogEntry),
}

impl Update {
    /// Applies the update to `state` (`None`: nothing stored).
    pub(crate) fn apply(self, state: &mut Option<State>) {
        match self {
            Update::Replace(next) => *state = Some(next),
            Update::Log(entry) => match state {
                Some(State::Log(log)) => match log.back_mut() {
                    Some(newest) if newest.at == entry.at => *newest = entry,
                    _ => log.push_back(entry),
                },
                _ => *state = Some(State::Log(VecDeque::from([entry]))),
            },
        }
    }
}

/// The verdict, and the update to make (with the state's new expiry,
/// absolute µs) if the call is consumed.
pub(crate) struct Evaluation {
    pub(crate) verdict: Verdict,
    pub(crate) update: Option<(Update, u64)>,
}

/// Evaluates `policy` for a call of `cost` at `now` over `state` (`None`:
/// no state stored). The log is trimmed in place, as the script trims it.
pub(crate) fn evaluate(
    policy: &Policy,
    state: Option<&mut State>,
    now: u64,
    cost: u64,
) -> Evaluation {
    let limit = policy.limit;
    let window = policy.window_micros();
    match policy.algorithm {
        Algorithm::SlidingLog => sliding_log(state, now, cost, limit, window),
        Algorithm::SlidingWindow => sliding_window(state.as_deref(), now, cost, limit, window),
        Algorithm::FixedWindow => fixed_window(state.as_deref(), now, cost, limit, window),
        Algorithm::Gcra => gcra(state.as_deref(), now, cost, policy),
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

/// Microseconds from `now` until `at + span`, 0 if that is past.
fn until(at: u64, span: u64, now: u64) -> u64 {
    at.saturating_add(span).saturating_sub(now)
}

fn sliding_log(
    state: Option<&mut State>,
    now: u64,
    cost: u64,
    limit: u64,
    window: u64,
) -> Evaluation {
    let mut none = VecDeque::new();
    let log = match state {
        Some(State::Log(log)) => log,
        _ => &mut none,
    };
    // Entries at or before now - window have left the window.
    if let Some(cutoff) = now.checked_sub(window) {
        while log.front().is_some_and(|e| e.at <= cutoff) {
            log.pop_front();
        }
    }
    // The weight in the window: the running total at the newest entry less
    // the total before the oldest.
    let start = log
        .front()
        .map_or(0, |e| e.cum.saturating_sub(u128::from(e.weight)));
    let newest = log.back().copied();
    let used = newest.map_or(0, |e| u64::try_from(e.cum - start).unwrap_or(u64::MAX));
    let room = limit.saturating_sub(used);
    let reset = newest.map_or(0, |e| until(e.at, window, now));
    if cost == 0 {
        return Evaluation {
            verdict: verdict(true, room as f64, 0.0, reset as f64),
            update: None,
        };
    }
    if cost <= room {
        // One entry per instant, and never older than the newest one (a
        // clock that steps back must not reorder the log).
        let entry = match newest {
            Some(e) if e.at >= now => LogEntry {
                at: e.at,
                weight: e.weight.saturating_add(cost),
                cum: e.cum + u128::from(cost),
            },
            _ => LogEntry {
                at: now,
                weight: cost,
                cum: newest.map_or(0, |e| e.cum) + u128::from(cost),
            },
        };
        let reset = until(entry.at, window, now);
        return Evaluation {
            verdict: verdict(true, (room - cost) as f64, 0.0, reset as f64),
            update: Some((Update::Log(entry), entry.at.saturating_add(window))),
        };
    }
    // The call fits once the oldest entries whose weight is at least `need`
    // have left the window: the first entry whose running total (since
    // `start`) reaches `need` is the last to leave. cost <= limit, so the
    // newest entry (total `used`) always qualifies.
    let need = u128::from(cost - room);
    let k = log.partition_point(|e| e.cum - start < need);
    let retry = log
        .get(k)
        .or(log.back())
        .map_or(window, |e| until(e.at, window, now));
    Evaluation {
        verdict: verdict(false, room as f64, retry as f64, reset as f64),
        update: None,
    }
}

fn sliding_window(
    state: Option<&State>,
    now: u64,
    cost: u64,
    limit: u64,
    window: u64,
) -> Evaluation {
    let idx = now / window;
    let (mut current, mut previous) = (0u64, 0u64);
    if let Some(&State::Sliding {
        window: w,
        current: c,
        previous: p,
    }) = state
    {
        if Some(w) == idx.checked_sub(1) {
            previous = c;
        } else if w == idx {
            (current, previous) = (c, p);
        }
    }
    let elapsed = now % window;
    let (cur, prev, win, lim, cst, el) = (
        current as f64,
        previous as f64,
        window as f64,
        limit as f64,
        cost as f64,
        elapsed as f64,
    );
    let estimate = prev * (win - el) / win + cur;
    // estimate >= cur, so this also keeps current + cost <= limit exactly
    // (cost <= limit is the engine's precondition, checked again here
    // because a cost above 2^53 is not exact as a double).
    let allowed = cost == 0 || (cost <= limit && cst <= lim - estimate);
    let used = if allowed {
        current.saturating_add(cost)
    } else {
        current
    };
    let remaining = lim - estimate - if allowed { cst } else { 0.0 };
    let reset = if used > 0 {
        window.saturating_mul(2) - elapsed
    } else if previous > 0 {
        window - elapsed
    } else {
        0
    };
    if allowed {
        let update = (cost > 0).then(|| {
            let next = State::Sliding {
                window: idx,
                current: used,
                previous,
            };
            (Update::Replace(next), now.saturating_add(reset))
        });
        return Evaluation {
            verdict: verdict(true, remaining, 0.0, reset as f64),
            update,
        };
    }
    let retry = if cost <= limit.saturating_sub(current) {
        // Later in this window, once enough of the previous one has slid out.
        let e = win * (1.0 - (lim - cur - cst) / prev);
        (e - el).ceil()
    } else {
        // In the next window, where this window's count becomes the previous.
        let e = if current > 0 {
            (win * (1.0 - (lim - cst) / cur)).max(0.0)
        } else {
            0.0
        };
        (win - el) + e.ceil()
    };
    Evaluation {
        verdict: verdict(false, remaining, retry, reset as f64),
        update: None,
    }
}

fn fixed_window(state: Option<&State>, now: u64, cost: u64, limit: u64, window: u64) -> Evaluation {
    let idx = now / window;
    let n = match state {
        Some(&State::Fixed { window: w, count }) if w == idx => count,
        _ => 0,
    };
    let room = limit.saturating_sub(n);
    let reset = window - now % window;
    if cost <= room {
        let update = (cost > 0).then(|| {
            let next = State::Fixed {
                window: idx,
                count: n + cost,
            };
            (Update::Replace(next), now.saturating_add(reset))
        });
        return Evaluation {
            verdict: verdict(true, (room - cost) as f64, 0.0, reset as f64),
            update,
        };
    }
    Evaluation {
        verdict: verdict(false, room as f64, reset as f64, reset as f64),
        update: None,
    }
}

/// Whole microseconds of `nanos`, rounded up.
fn ceil_micros(nanos: u128) -> u64 {
    u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// GCRA's `remaining`: whole intervals in `slack` nanoseconds, in the
/// double arithmetic the script uses on its (µs, ns) pairs.
fn intervals(slack: u128, interval: u128) -> f64 {
    let (us, ns) = ((slack / 1000) as f64, (slack % 1000) as f64);
    ((us * 1000.0 + ns) / interval as f64).floor()
}

/// Governor's GCRA, exactly: the interval `t` is window / limit rounded
/// down to the nanosecond; a call of `cost` moves the theoretical arrival
/// time to max(tat, now) + cost × t and is admitted when that is at most
/// burst × t ahead of now (governor: `t0 >= tat + (n - 1) t - tau`, with
/// tau = (burst - 1) t).
fn gcra(state: Option<&State>, now: u64, cost: u64, policy: &Policy) -> Evaluation {
    let interval = policy.interval_nanos();
    let tolerance = interval.saturating_mul(u128::from(policy.effective_burst()));
    let now = u128::from(now) * 1000;
    let tat = match state {
        Some(&State::Gcra { tat }) => tat.max(now),
        _ => now,
    };
    let new_tat = tat.saturating_add(interval.saturating_mul(u128::from(cost)));
    if cost == 0 || new_tat - now <= tolerance {
        let ahead = new_tat - now;
        let update = (cost > 0).then(|| {
            (
                Update::Replace(State::Gcra { tat: new_tat }),
                ceil_micros(new_tat),
            )
        });
        return Evaluation {
            verdict: Verdict {
                allowed: true,
                remaining: intervals(tolerance.saturating_sub(ahead), interval) as u64,
                retry_after_us: 0,
                reset_after_us: ceil_micros(ahead),
            },
            update,
        };
    }
    Evaluation {
        verdict: Verdict {
            allowed: false,
            remaining: intervals(tolerance.saturating_sub(tat - now), interval) as u64,
            retry_after_us: ceil_micros(new_tat - now - tolerance),
            reset_after_us: ceil_micros(tat - now),
        },
        update: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const ALGORITHMS: [Algorithm; 4] = [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ];

    /// Evaluates and, if allowed, applies the update, as the store does.
    fn check(policy: &Policy, state: &mut Option<State>, now: u64, cost: u64) -> Verdict {
        let evaluation = evaluate(policy, state.as_mut(), now, cost);
        if evaluation.verdict.allowed {
            if let Some((update, _)) = evaluation.update {
                update.apply(state);
            }
        }
        evaluation.verdict
    }

    #[test]
    fn a_sliding_log_check_adds_one_entry_whatever_its_cost() {
        let policy = Policy::new(10_000_000, Duration::from_secs(60));
        let mut state = None;
        assert!(check(&policy, &mut state, 1_000, 2_000_000).allowed);
        assert!(check(&policy, &mut state, 2_000, 3_000_000).allowed);
        let Some(State::Log(log)) = &state else {
            panic!("{state:?}")
        };
        assert_eq!(log.len(), 2, "one entry per call, not per unit of cost");
        let third = check(&policy, &mut state, 3_000, 5_000_000);
        assert_eq!((third.allowed, third.remaining), (true, 0));
        let refused = check(&policy, &mut state, 4_000, 1);
        assert_eq!((refused.allowed, refused.remaining), (false, 0));
        // Room for one unit comes when the first call's 2 000 000 leave.
        assert_eq!(refused.retry_after_us, 1_000 + 60_000_000 - 4_000);
    }

    #[test]
    fn calls_at_one_instant_are_one_log_entry() {
        let policy = Policy::new(10, Duration::from_secs(1));
        let mut state = None;
        for _ in 0..4 {
            assert!(check(&policy, &mut state, 5, 2).allowed);
        }
        let Some(State::Log(log)) = &state else {
            panic!("{state:?}")
        };
        assert_eq!(
            log.iter().copied().collect::<Vec<_>>(),
            [LogEntry {
                at: 5,
                weight: 8,
                cum: 8
            }]
        );
    }

    #[test]
    fn a_clock_stepping_back_never_reorders_the_log() {
        let policy = Policy::new(3, Duration::from_secs(1));
        let mut state = None;
        assert!(check(&policy, &mut state, 500_000, 1).allowed);
        assert!(check(&policy, &mut state, 200_000, 1).allowed);
        let Some(State::Log(log)) = &state else {
            panic!("{state:?}")
        };
        assert_eq!(log.len(), 1, "the later call joins the newest entry");
        // Both calls leave the window with the newest entry, a second
        // after 500 000.
        let refused = check(&policy, &mut state, 300_000, 2);
        assert_eq!(refused.retry_after_us, 1_200_000);
    }

    #[test]
    fn cost_zero_is_allowed_and_writes_nothing() {
        for algorithm in ALGORITHMS {
            let policy = Policy::new(2, Duration::from_secs(1)).algorithm(algorithm);
            let mut state = None;
            assert!(check(&policy, &mut state, 10, 2).allowed, "{algorithm:?}");
            let before = state.clone();
            let zero = evaluate(&policy, state.as_mut(), 20, 0);
            assert!(zero.verdict.allowed, "{algorithm:?}");
            assert_eq!(zero.verdict.remaining, 0, "{algorithm:?}");
            assert!(zero.update.is_none(), "{algorithm:?}");
            assert_eq!(state, before, "{algorithm:?}");
        }
    }

    /// Whatever reaches the algorithms (the engine refuses costs above a
    /// policy's capacity first), nothing panics or wraps into an admission.
    #[test]
    fn extreme_inputs_neither_panic_nor_admit_too_much() {
        let windows = [
            Duration::from_micros(1),
            Duration::from_secs(1),
            Policy::MAX_WINDOW,
        ];
        let limits = [1, 3, Policy::MAX_LIMIT];
        let costs = [1, 2, Policy::MAX_LIMIT, Policy::MAX_LIMIT + 1, u64::MAX];
        let times = [0, 1, 1 << 52, (1 << 53) - 1, u64::MAX / 2, u64::MAX];
        for algorithm in ALGORITHMS {
            for window in windows {
                for limit in limits {
                    let policy = Policy::new(limit, window).algorithm(algorithm);
                    for cost in costs {
                        for now in times {
                            let mut state = None;
                            let first = check(&policy, &mut state, now, cost);
                            assert_eq!(
                                first.allowed,
                                cost <= policy.max_cost(),
                                "{policy:?} cost {cost} at {now}"
                            );
                            let second = check(&policy, &mut state, now, cost);
                            if first.allowed && cost > limit / 2 && algorithm != Algorithm::Gcra {
                                assert!(!second.allowed, "{policy:?} cost {cost} at {now}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_limit_of_two_to_the_53_counts_exactly() {
        for algorithm in [
            Algorithm::SlidingLog,
            Algorithm::SlidingWindow,
            Algorithm::FixedWindow,
        ] {
            let max = Policy::MAX_LIMIT;
            let policy = Policy::new(max, Duration::from_secs(1)).algorithm(algorithm);
            let mut state = None;
            let first = check(&policy, &mut state, 1_000, max - 1);
            assert_eq!((first.allowed, first.remaining), (true, 1), "{algorithm:?}");
            // 2^53 - 1 + 2 is not a double: a sum would round to 2^53 and admit.
            assert!(
                !check(&policy, &mut state, 1_001, 2).allowed,
                "{algorithm:?}"
            );
            let last = check(&policy, &mut state, 1_002, 1);
            assert_eq!((last.allowed, last.remaining), (true, 0), "{algorithm:?}");
        }
    }

    #[test]
    fn gcra_admits_the_whole_burst_at_one_instant() {
        // The interval of 3 per second is 333 333 333.3 ns: in whole µs and
        // rounded up on each call, three calls needed 1 000 002 µs and the
        // third was refused.
        for (limit, burst) in [(3, 3), (7, 7), (3, 1), (1_000_000, 1_000_000)] {
            let policy = Policy::new(limit, Duration::from_secs(1))
                .algorithm(Algorithm::Gcra)
                .burst(burst);
            let mut state = None;
            for i in 0..burst {
                let v = check(&policy, &mut state, 1_000_000_000, 1);
                assert_eq!(
                    (v.allowed, v.remaining),
                    (true, burst - i - 1),
                    "{policy:?} call {i}"
                );
            }
            assert!(
                !check(&policy, &mut state, 1_000_000_000, 1).allowed,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn gcra_retry_after_is_governors_earliest_time_rounded_up() {
        let policy = Policy::new(3, Duration::from_secs(1)).algorithm(Algorithm::Gcra);
        let mut state = None;
        let now = 1_000_000_000;
        for _ in 0..3 {
            assert!(check(&policy, &mut state, now, 1).allowed);
        }
        // TAT = now + 999 999 999 ns; the next call conforms from
        // TAT - 2 × 333 333 333 ns = now + 333 333 333 ns.
        let refused = check(&policy, &mut state, now, 1);
        assert_eq!(refused.retry_after_us, 333_334);
        assert!(!check(&policy, &mut state, now + 333_333, 1).allowed);
        assert!(check(&policy, &mut state, now + 333_334, 1).allowed);
    }
}
