//! When a schedule task is due, as pure functions of the stored state and a clock the
//! caller passes in, so every rule (first sight, missed runs after downtime, changed
//! expressions) is tested against a controllable clock.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// A cron expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    pub expr: String,
    pub reason: String,
}

/// A parsed task schedule (UTC).
#[derive(Debug, Clone)]
pub struct Cron(cron::Schedule);

impl Cron {
    /// Parses 5 fields (`min hour dom month dow`, as crontab and the operator's tasks)
    /// or 6 with leading seconds. Day-of-week numbers follow the `cron` crate (1 = Sunday
    /// … 7 = Saturday); names (`MON-FRI`) mean the same everywhere.
    ///
    /// # Errors
    /// [`CronError`].
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {}", expr.trim()),
            6 => expr.trim().to_string(),
            n => {
                return Err(CronError {
                    expr: expr.to_string(),
                    reason: format!("expected 5 fields (or 6 with seconds first), got {n}"),
                })
            }
        };
        cron::Schedule::from_str(&full)
            .map(Cron)
            .map_err(|e| CronError {
                expr: expr.to_string(),
                reason: e.to_string(),
            })
    }

    /// The first slot strictly after `unix` seconds.
    pub fn next_after(&self, unix: i64) -> Option<i64> {
        let t: DateTime<Utc> = DateTime::from_timestamp(unix, 0)?;
        self.0.after(&t).next().map(|d| d.timestamp())
    }
}

/// A task's persisted timing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// When the task (with its current expression) was first seen; slots before it
    /// never fire, so adding a task does not start a backup for a past slot.
    pub since: i64,
    /// The last time a slot was taken (fired or skipped); 0 if never.
    pub last_fire: i64,
}

/// What to do with a task now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The next slot is still ahead.
    Wait { next: i64 },
    /// A slot has passed since the last one taken: take it once. `missed` counts the
    /// further slots that passed too (downtime); they are not run.
    Now { slot: i64, missed: u32 },
}

/// Evaluates a task at `now`. However many slots passed since the last one taken,
/// the answer is one run; the caller then records `last_fire = now`, so the next
/// slot is the first after `now`.
pub fn due(cron: &Cron, t: Timing, now: i64) -> Due {
    let from = t.last_fire.max(t.since);
    let Some(next) = cron.next_after(from) else {
        return Due::Wait { next: i64::MAX };
    };
    if next > now {
        return Due::Wait { next };
    }
    let mut missed = 0u32;
    let mut last = next;
    // Bounded: only counts for the log.
    while missed < 1000 {
        match cron.next_after(last) {
            Some(n) if n <= now => {
                missed += 1;
                last = n;
            }
            _ => break,
        }
    }
    Due::Now { slot: last, missed }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    #[test]
    fn five_and_six_field_expressions_parse_others_do_not() {
        let c = Cron::parse("*/15 * * * *").expect("5 fields");
        assert_eq!(c.next_after(T0), Some(T0 + 15 * 60));
        let s = Cron::parse("*/10 * * * * *").expect("6 fields");
        assert_eq!(s.next_after(T0), Some(T0 + 10));
        assert!(Cron::parse("* * *").is_err());
        assert!(Cron::parse("61 * * * *").is_err());
        let daily = Cron::parse("30 2 * * *").expect("daily");
        assert_eq!(daily.next_after(T0), Some(T0 + 2 * 3600 + 30 * 60));
        let weekdays = Cron::parse("0 0 * * MON-FRI").expect("names");
        // 2026-01-01 is a Thursday: the next weekday midnight is Friday the 2nd.
        assert_eq!(weekdays.next_after(T0), Some(T0 + 86_400));
    }

    #[test]
    fn a_new_task_waits_for_its_first_slot() {
        let c = Cron::parse("0 * * * *").expect("hourly");
        let t = Timing {
            since: T0 + 10,
            last_fire: 0,
        };
        assert_eq!(due(&c, t, T0 + 20), Due::Wait { next: T0 + 3600 });
        assert_eq!(
            due(&c, t, T0 + 3600),
            Due::Now {
                slot: T0 + 3600,
                missed: 0
            }
        );
    }

    #[test]
    fn after_downtime_a_missed_run_is_taken_once() {
        let c = Cron::parse("0 * * * *").expect("hourly");
        let t = Timing {
            since: T0,
            last_fire: T0 + 3600,
        };
        // Down for five hours and a half: one run now, four slots reported missed.
        let now = T0 + 6 * 3600 + 1800;
        assert_eq!(
            due(&c, t, now),
            Due::Now {
                slot: T0 + 6 * 3600,
                missed: 4
            }
        );
        // Once taken (last_fire = now), nothing until the next slot.
        let after = Timing {
            since: T0,
            last_fire: now,
        };
        assert_eq!(
            due(&c, after, now + 60),
            Due::Wait {
                next: T0 + 7 * 3600
            }
        );
    }

    #[test]
    fn a_slot_is_taken_once_even_when_evaluated_twice() {
        let c = Cron::parse("*/5 * * * * *").expect("every 5 s");
        let mut t = Timing {
            since: T0,
            last_fire: 0,
        };
        let mut fired = Vec::new();
        for now in T0..T0 + 21 {
            // Two evaluations per second, as two ticks could make.
            for _ in 0..2 {
                if let Due::Now { slot, .. } = due(&c, t, now) {
                    fired.push(slot);
                    t.last_fire = now;
                }
            }
        }
        assert_eq!(fired, vec![T0 + 5, T0 + 10, T0 + 15, T0 + 20]);
    }
}
